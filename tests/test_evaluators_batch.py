"""Batched answers (a provider's ``chat_batch``) are the answers ``chat`` gives one at a time."""

from __future__ import annotations

import pytest

from wilson_core.evaluators.running import generate, provider_for
from wilson_core.interfaces import EvalCase

pytest.importorskip("wilson_train")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from wilson_train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", pretrain_steps=0)


def test_batched_generation_equals_one_at_a_time(tiny):
    cases = [EvalCase(id=str(i), messages=[{"role": "system", "content": "Name the group."},
                                           {"role": "user", "content": text}], tools=None,
                      reference={"role": "assistant", "content": "x"})
             for i, text in enumerate(["Item: apple", "Item: a much longer item name with words", "Item: zinc"])]
    provider = provider_for(f"transformers:{tiny}")
    single = [provider.chat(list(c.messages), None, {"temperature": 0, "max_tokens": 6}) for c in cases]
    batched = provider.chat_batch([c.messages for c in cases], [None] * len(cases), {"max_tokens": 6})
    assert [(r.content, r.output_tokens) for r in batched] == [(r.content, r.output_tokens) for r in single]
    answers = generate(f"transformers:{tiny}", cases, max_tokens=6, batch_size=2)
    assert [a["content"] for a in answers] == [r.content for r in single]
