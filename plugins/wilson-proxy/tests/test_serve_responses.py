"""The OpenAI Responses API (`client.responses.create`) answered by a local model, through the official SDK.

`wilson serve` and a proxy's local route answer ``POST /v1/responses`` in the Responses wire
format (a ``response`` object, or its typed SSE events), with function tools, and record each
call through the same converter (wilson_core.protocols.openai_responses) as upstream answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from proxy_support import start_proxy
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.routes import Route

from wilson_core.store import open_store
from wilson_core.testing.upstreams import FakeUpstream, Scripted

TOOL = {"type": "function", "name": "lookup", "description": "Look a merchant up",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}
CALL = {"content": None, "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"name": "TESCO"}}]}


def script(messages, tools):
    """Text that names the request; a tool call when the request offers tools and no result came back yet."""
    if tools and messages[-1]["role"] != "tool":
        return CALL
    if messages[-1]["role"] == "tool":
        return f"result was {messages[-1]['content']}"
    return f"local:{messages[-1]['content']}"


def rows(db: Path) -> list:
    store = open_store(db)
    try:
        return sorted(store.iter_interactions(), key=lambda r: r.created_at)
    finally:
        store.close()


@pytest.fixture
def served(tmp_path):
    settings = ProxySettings(upstreams={}, port=0, db=str(tmp_path / "serve.db"), served_model="tiny",
                             route_flags=("local scripted:tiny",))
    with RunningProxy(settings) as proxy:
        proxy.server.set_routes([Route(name="serve", mode="local", provider="scripted:tiny",
                                       options={"script": script, "chunk_chars": 3})])
        yield proxy, tmp_path / "serve.db"


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_responses_text_streamed_and_not_are_recorded(served):
    proxy, db = served
    app = client(proxy)
    whole = app.responses.create(model="tiny", input="hello", instructions="Be brief.")
    assert whole.status == "completed" and whole.output_text == "local:hello"
    assert whole.usage.output_tokens == 1 and whole.usage.total_tokens == whole.usage.input_tokens + 1
    events = list(app.responses.create(model="tiny", input=[{"role": "user", "content": "streamed hi"}],
                                       stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "local:streamed hi" and len(deltas) > 2  # streamed as generated
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with app.responses.stream(model="tiny", input="helper") as stream:
        final = stream.get_final_response()
    assert final.output_text == "local:helper"
    stats = proxy.wait_recorded()
    assert stats["recorded"] == 3 and stats["capture_errors"] == 0
    stored = rows(db)
    assert [(r.provider, r.status, r.response_content) for r in stored] == [
        ("scripted", "ok", "local:hello"), ("scripted", "ok", "local:streamed hi"), ("scripted", "ok", "local:helper")]
    assert stored[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert stored[1].ttft_ms is not None


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_tools_round_trip(served, stream):
    proxy, db = served
    app = client(proxy)
    if stream:
        with app.responses.stream(model="tiny", input="who is TESCO?", tools=[TOOL]) as events:
            first = events.get_final_response()
    else:
        first = app.responses.create(model="tiny", input="who is TESCO?", tools=[TOOL])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("lookup", {"name": "TESCO"})
    assert call.call_id == "call_1" and first.status == "completed"
    follow = [{"role": "user", "content": "who is TESCO?"}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id, "output": "a grocer"}]
    second = app.responses.create(model="tiny", input=follow, tools=[TOOL], stream=False)
    assert second.output_text == "result was a grocer"
    proxy.wait_recorded()
    first_row, second_row = rows(db)
    assert [(c.name, c.arguments) for c in first_row.tool_calls] == [("lookup", {"name": "TESCO"})]
    assert first_row.tools[0]["function"]["name"] == "lookup"  # stored in the chat-completions shape
    assert second_row.messages[-1]["role"] == "tool" and second_row.messages[-1]["content"] == "a grocer"


def test_responses_forced_tool_choice_and_refusals(served):
    proxy, _ = served
    app = client(proxy)
    with pytest.raises(openai.BadRequestError) as refused:
        app.responses.create(model="tiny", input="x", tools=[TOOL], tool_choice={"type": "function", "name": "nope"})
    assert refused.value.body["param"] == "tool_choice.name" and "names no tool" in refused.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        app.responses.create(model="tiny", input="x", previous_response_id="resp_123")
    with pytest.raises(openai.BadRequestError, match="web_search"):
        app.responses.create(model="tiny", input="x", tools=[{"type": "web_search"}])
    with pytest.raises(openai.BadRequestError, match="max_output_tokens"):
        app.responses.create(model="tiny", input="x", max_output_tokens=0)


def test_a_proxy_local_route_answers_responses_and_other_models_go_upstream(tmp_path):
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        proxy = start_proxy(upstream, tmp_path / "r.db")
        try:
            proxy.server.set_routes([Route(name="tuned", mode="local", provider="scripted:tuned", model="tuned",
                                           options={"script": script})])
            app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0)
            assert app.responses.create(model="tuned", input="one").output_text == "local:one"
            assert app.responses.create(model="gpt-4.1", input="two").output_text == "from upstream"
            assert [r.path for r in upstream.requests] == ["/v1/responses"]
            proxy.wait_recorded()
            assert [(r.provider, r.response_content) for r in rows(tmp_path / "r.db")] == [
                ("scripted", "local:one"), ("openai", "from upstream")]
        finally:
            proxy.stop()
