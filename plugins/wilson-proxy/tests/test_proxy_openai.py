"""The official openai SDK through `wilson proxy` against a real local upstream: what the app gets, what is stored."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from wilson_core.testing.upstreams import Scripted

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_merchant",
            "description": "Find a merchant's category",
            "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert",
            "description": "Convert an amount",
            "parameters": {"type": "object", "properties": {"amount": {"type": "number"}}},
        },
    },
]
MESSAGES = [
    {"role": "system", "content": "You categorise bank transactions."},
    {"role": "user", "content": "STARBUCKS #1234 4.50 USD — café ☕"},
]


def client(proxied, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxied.openai_url, api_key="sk-secret-key-123", max_retries=0,
                         default_headers=headers or None)


def test_non_streamed_call_is_relayed_and_recorded(proxied):
    proxied.upstream.push(Scripted(text="Food & Drink", input_tokens=31, output_tokens=3))
    reply = client(proxied).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert reply.choices[0].message.content == "Food & Drink"
    assert reply.usage.prompt_tokens == 31

    (stored,) = proxied.stored(1)
    assert stored.status == "ok" and stored.provider == "openai" and stored.model == "gpt-4o-mini"
    assert [m["content"] for m in stored.messages] == [m["content"] for m in MESSAGES]
    assert stored.response_content == "Food & Drink"
    assert (stored.input_tokens, stored.output_tokens, stored.total_tokens) == (31, 3, 34)
    assert stored.params.get("temperature") == 0.2
    assert stored.duration_ms > 0

    received = proxied.upstream.requests[-1]
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["authorization"] == "Bearer sk-secret-key-123"  # passed upstream untouched
    assert received.path == "/v1/chat/completions"
    assert received.json["messages"] == MESSAGES


def test_auth_headers_are_never_stored(proxied):
    client(proxied).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    proxied.stored(1)
    for path in proxied.db.parent.iterdir():  # the database, its WAL, any spool
        if path.is_file():
            assert b"sk-secret-key-123" not in path.read_bytes(), path


def test_wilson_headers_group_calls_into_a_run_and_are_not_sent_upstream(proxied):
    app = client(proxied, **{"X-Wilson-Run-Id": "run-0001", "X-Wilson-Call-Type": "categorize",
                             "X-Wilson-Metadata": json.dumps({"user": "u1"})})
    proxied.upstream.push(Scripted(text=None, tool_calls=[("lookup_merchant", {"name": "STARBUCKS"})]),
                          Scripted(text="Food & Drink"))
    first = app.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    follow = MESSAGES + [first.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": "coffee shop"}]
    app.chat.completions.create(model="gpt-4o-mini", messages=follow, tools=TOOLS)

    one, two = proxied.stored(2)
    assert (one.run_id, one.sequence_num, two.run_id, two.sequence_num) == ("run-0001", 1, "run-0001", 2)
    assert one.call_type == two.call_type == "categorize"
    assert one.tool_calls[0].name == "lookup_merchant" and one.tool_calls[0].arguments == {"name": "STARBUCKS"}
    assert [t["function"]["name"] for t in one.tools] == ["lookup_merchant", "convert"]
    store = proxied.store()
    try:
        assert store.get_run("run-0001").metadata == {"user": "u1"}
        (result,) = store.tool_results(one.id)  # linked without any code in the app
        assert (result.tool_call_id, result.content) == (call.id, "coffee shop")
    finally:
        store.close()
    for received in proxied.upstream.requests:
        assert not [name for name in received.headers if name.lower().startswith("x-wilson")]


def test_streamed_parallel_tool_calls_split_arguments_and_usage_chunk(proxied):
    proxied.upstream.push(Scripted(text="Two lookups.", piece=7, fragment=3, input_tokens=40, output_tokens=12,
                                   tool_calls=[("lookup_merchant", {"name": "STARBUCKS #1234"}),
                                               ("convert", {"amount": 4.5})]))
    stream = client(proxied).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True, stream_options={"include_usage": True})
    text, calls, usage = "", {}, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for fragment in choice.delta.tool_calls or []:
                entry = calls.setdefault(fragment.index, {"name": "", "arguments": ""})
                entry["name"] += fragment.function.name or ""
                entry["arguments"] += fragment.function.arguments or ""
    assert text == "Two lookups."
    assert [json.loads(c["arguments"]) for c in calls.values()] == [{"name": "STARBUCKS #1234"}, {"amount": 4.5}]
    assert usage.prompt_tokens == 40

    (stored,) = proxied.stored(1)
    assert stored.status == "ok" and stored.response_content == "Two lookups."
    assert [(c.name, c.arguments) for c in stored.tool_calls] == [
        ("lookup_merchant", {"name": "STARBUCKS #1234"}), ("convert", {"amount": 4.5})]
    assert (stored.input_tokens, stored.output_tokens) == (40, 12)
    assert stored.ttft_ms is not None and 0 < stored.ttft_ms <= stored.duration_ms
    assert stored.params.get("stream_options") == {"include_usage": True} or "stream" not in stored.params


def test_stream_bytes_are_identical_to_the_upstream_s(proxied):
    """Byte for byte: the same scripted answer, once directly and once through the proxy."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "tools": TOOLS, "stream": True,
            "stream_options": {"include_usage": True}}
    scripted = Scripted(text="Héllo ✓ wörld", piece=5, fragment=2, serial=7,
                        tool_calls=[("lookup_merchant", {"name": "A"}), ("convert", {"amount": 1})])
    proxied.upstream.push(scripted, scripted)
    answers = []
    for base in (proxied.upstream.openai_url, proxied.openai_url):
        pieces = []
        with httpx.stream("POST", base + "/chat/completions", json=body, timeout=30,
                          headers={"Authorization": "Bearer k"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for piece in response.iter_raw():
                pieces.append(piece)
        answers.append(b"".join(pieces))
    assert answers[0] == answers[1] and b"[DONE]" in answers[1]
    proxied.stored(1)


def test_responses_api_and_models_list(proxied):
    proxied.upstream.push(Scripted(text="Groceries"))
    app = client(proxied)
    reply = app.responses.create(model="gpt-4o-mini", instructions="Categorise.", input="TESCO 12.00")
    assert reply.output_text == "Groceries"
    models = app.models.list()
    assert [m.id for m in models.data]
    (stored,) = proxied.stored(1)  # /v1/models is relayed, not recorded
    assert stored.response_content == "Groceries" and stored.status == "ok"
    assert stored.messages[0]["role"] == "system" and stored.messages[-1]["content"] == "TESCO 12.00"


def test_streamed_responses_api(proxied):
    proxied.upstream.push(Scripted(text="Transport costs", piece=9))
    app = client(proxied)
    with app.responses.stream(model="gpt-4o-mini", input="UBER TRIP 9.80") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
    assert text == "Transport costs"
    (stored,) = proxied.stored(1)
    assert stored.response_content == "Transport costs" and stored.ttft_ms is not None


@pytest.mark.parametrize("status", [429, 500])
def test_http_errors_reach_the_app_unchanged_and_are_recorded(proxied, status):
    proxied.upstream.push(Scripted(status=status, error=f"scripted {status}"))
    with pytest.raises(openai.APIStatusError) as raised:
        client(proxied).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == status
    assert f"scripted {status}" in str(raised.value)
    (stored,) = proxied.stored(1)
    assert stored.status == "error" and f"scripted {status}" in stored.error and str(status) in stored.error


def test_error_event_mid_stream(proxied):
    proxied.upstream.push(Scripted(text="partial answer here", fragment=4, error_after=3, error="overloaded"))
    with pytest.raises(openai.APIError):
        for _ in client(proxied).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    (stored,) = proxied.stored(1)
    assert stored.status == "error" and "overloaded" in stored.error
    assert stored.response_content and "partial answer here".startswith(stored.response_content)


def test_upstream_drops_the_connection_mid_stream(proxied):
    proxied.upstream.push(Scripted(text="this will be cut", fragment=3, drop_after=3))
    got = ""
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        for chunk in client(proxied).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            got += "".join(c.delta.content or "" for c in chunk.choices)
    (stored,) = proxied.stored(1)
    assert stored.status == "incomplete" and "upstream closed" in stored.error
    assert stored.response_content == got and got and "this will be cut".startswith(got)


def test_client_disconnect_mid_stream_is_recorded_incomplete_and_stops_the_upstream(proxied):
    proxied.upstream.push(Scripted(text="a long answer " * 20, fragment=2, delay=0.02))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", proxied.openai_url + "/chat/completions", json=body, timeout=30) as response:
        seen = b""
        for piece in response.iter_raw():
            seen += piece
            if seen.count(b"data:") >= 3:
                break
    (stored,) = proxied.stored(1)
    assert stored.status == "incomplete" and "client disconnected" in stored.error
    assert stored.response_content and ("a long answer " * 20).startswith(stored.response_content)
    assert len(stored.response_content) < len("a long answer " * 20)
