"""The OpenAI wrapper with the official ``openai`` SDK against a real local upstream.

Every test makes the same call through a plain SDK client and through the
wrapped one (the upstream answers both with byte-identical replies) and
checks that the app gets exactly the same thing, then what was stored.
"""

from __future__ import annotations

import asyncio
import gc
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

openai = pytest.importorskip("openai")

import wilson_core  # noqa: E402
from wilson_core import capture  # noqa: E402
from wilson_core.integrations import openai as wrapper  # noqa: E402
from wilson_core.testing.upstreams import FakeUpstream, Scripted  # noqa: E402
from wilson_core.text import clean_json, clean_text  # noqa: E402

TOOLS = [
    {"type": "function", "function": {"name": "get_balance", "description": "Balance of an account",
                                      "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_transactions", "description": "Transactions",
                                      "parameters": {"type": "object", "properties": {"month": {"type": "string"}}}}},
]
MESSAGES = [
    {"role": "system", "content": "You are Wilson, a finance assistant."},
    {"role": "user", "content": "What is my balance, and what did I spend in May?"},
]
PARALLEL = Scripted(
    text=None,
    tool_calls=[("get_balance", {"account": "chk-1"}), ("get_transactions", {"month": "2025-05", "note": "ünï"})],
    serial=7,
)


@pytest.fixture()
def upstream():
    with FakeUpstream() as server:
        yield server


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


def stored(db):
    store = wilson_core.open_store(db)
    try:
        return list(store.iter_interactions(order_by="i.created_at, i.rowid"))
    finally:
        store.close()


def tool_results(db, interaction_id):
    store = wilson_core.open_store(db)
    try:
        return store.tool_results(interaction_id)
    finally:
        store.close()


def clients(upstream, db, cls=None, **kwargs):
    cls_raw = openai.OpenAI if cls is None else cls[0]
    cls_wrapped = wrapper.OpenAI if cls is None else cls[1]
    options = dict(base_url=upstream.openai_url, api_key="sk-test", max_retries=0, **kwargs)
    return cls_raw(**options), cls_wrapped(wilson_db=db, **options)


def dumps(items):
    return [item.model_dump() for item in items]


# -- non-streamed ------------------------------------------------------------------------


def test_parallel_tool_calls_reach_the_app_unchanged_and_are_stored(upstream, db):
    raw, wrapped = clients(upstream, db)
    upstream.push(PARALLEL, PARALLEL)
    expected = raw.chat.completions.create(model="gpt-test", messages=MESSAGES, tools=TOOLS, temperature=0.2)
    got = wrapped.chat.completions.create(model="gpt-test", messages=MESSAGES, tools=TOOLS, temperature=0.2)
    assert type(got) is type(expected)
    assert got.model_dump() == expected.model_dump()
    [row] = stored(db)
    assert row.provider == "openai" and row.model == "gpt-test" and row.status == "ok"
    assert list(row.messages) == MESSAGES
    assert list(row.tools) == TOOLS
    assert row.params == {"temperature": 0.2}
    assert row.response_content is None
    assert [(c.id, c.name, c.arguments) for c in row.tool_calls] == [
        ("call_0007_0", "get_balance", {"account": "chk-1"}),
        ("call_0007_1", "get_transactions", {"month": "2025-05", "note": "ünï"}),
    ]
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (21, 7, 28)
    assert row.ttft_ms is None and row.duration_ms > 0
    # the upstream saw the same request from both clients
    assert upstream.requests[0].json == upstream.requests[1].json


def test_text_answer_and_models_list_is_not_captured(upstream, db):
    raw, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="Your balance is 1,204.50 EUR.", serial=1), Scripted(text="Your balance is 1,204.50 EUR.", serial=1))
    assert (wrapped.chat.completions.create(model="m", messages=MESSAGES).model_dump()
            == raw.chat.completions.create(model="m", messages=MESSAGES).model_dump())
    assert [m.id for m in wrapped.models.list()] == ["fake-model"]
    [row] = stored(db)
    assert row.response_content == "Your balance is 1,204.50 EUR."


# -- streamed ----------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [None, 1, 3, 17])
def test_stream_split_anywhere_with_usage_chunk_and_parallel_calls(upstream, db, piece):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Let me look.", tool_calls=PARALLEL.tool_calls, piece=piece, fragment=3, serial=9)
    upstream.push(reply, reply)
    kwargs = dict(model="gpt-test", messages=MESSAGES, tools=TOOLS, stream=True, stream_options={"include_usage": True})
    expected = dumps(raw.chat.completions.create(**kwargs))
    stream = wrapped.chat.completions.create(**kwargs)
    assert type(stream) is openai.Stream
    got = dumps(stream)
    assert got == expected
    assert expected[-1]["choices"] == [] and expected[-1]["usage"]["total_tokens"] == 28  # usage-only chunk
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                 for c in expected if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert len(fragments) > 4  # the arguments did come in pieces
    [row] = stored(db)
    assert row.status == "ok" and row.response_content == "Let me look."
    assert [(c.name, c.arguments) for c in row.tool_calls] == [
        ("get_balance", {"account": "chk-1"}), ("get_transactions", {"month": "2025-05", "note": "ünï"})]
    assert (row.input_tokens, row.output_tokens) == (21, 7)
    assert row.params == {}  # stream and stream_options are transport, not parameters
    assert 0 < row.ttft_ms <= row.duration_ms


def test_stream_without_usage_chunk_stores_no_usage(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="Hi there", piece=2))
    text = "".join(c.choices[0].delta.content or "" for c in wrapped.chat.completions.create(
        model="m", messages=MESSAGES, stream=True) if c.choices)
    [row] = stored(db)
    assert text == row.response_content == "Hi there"
    assert row.input_tokens is None and row.status == "ok"


def test_stream_helper_is_captured(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="From the helper.", piece=5))
    with wrapped.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    [row] = stored(db)
    assert final.choices[0].message.content == row.response_content == "From the helper."


def test_async_client_streamed_and_not(upstream, db):
    raw, wrapped = clients(upstream, db, cls=(openai.AsyncOpenAI, wrapper.AsyncOpenAI))
    reply = Scripted(text="Async hello", tool_calls=PARALLEL.tool_calls, piece=4, serial=3)

    async def main():
        upstream.push(reply, reply, reply, reply)
        kwargs = dict(model="m", messages=MESSAGES, tools=TOOLS, stream=True, stream_options={"include_usage": True})
        expected = [c.model_dump() async for c in await raw.chat.completions.create(**kwargs)]
        got = [c.model_dump() async for c in await wrapped.chat.completions.create(**kwargs)]
        plain = (await raw.chat.completions.create(model="m", messages=MESSAGES)).model_dump()
        wrapped_plain = (await wrapped.chat.completions.create(model="m", messages=MESSAGES)).model_dump()
        return expected, got, plain, wrapped_plain

    expected, got, plain, wrapped_plain = asyncio.run(main())
    assert got == expected and wrapped_plain == plain
    rows = stored(db)
    assert [r.status for r in rows] == ["ok", "ok"]
    assert rows[0].response_content == rows[1].response_content == "Async hello"
    assert [c.name for c in rows[0].tool_calls] == ["get_balance", "get_transactions"]
    assert rows[0].ttft_ms is not None and rows[1].ttft_ms is None


# -- errors ------------------------------------------------------------------------------


def outcome(call):
    try:
        return ("ok", call())
    except Exception as exc:  # what the app sees
        return (type(exc), str(exc), getattr(exc, "status_code", None))


@pytest.mark.parametrize("status,error", [(429, openai.RateLimitError), (500, openai.InternalServerError)])
def test_http_errors_raise_the_same_and_are_stored(upstream, db, status, error):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(status=status, error="slow down please")
    upstream.push(reply, reply)
    expected = outcome(lambda: raw.chat.completions.create(model="m", messages=MESSAGES))
    got = outcome(lambda: wrapped.chat.completions.create(model="m", messages=MESSAGES))
    assert got == expected and expected[0] is error
    [row] = stored(db)
    assert row.status == "error" and f"HTTP {status}" in row.error and "slow down please" in row.error


def test_sdk_retry_after_500_records_both_attempts(upstream, db):
    _, wrapped = clients(upstream, db)
    wrapped = wrapped.with_options(max_retries=1)
    upstream.push(Scripted(status=500), Scripted(text="second time lucky"))
    reply = wrapped.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "second time lucky"
    rows = stored(db)
    assert [r.status for r in rows] == ["error", "ok"]
    assert rows[0].run_id != rows[1].run_id or rows[0].sequence_num != rows[1].sequence_num


def test_error_event_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Partial answer then trouble", error_after=4, serial=2, error="upstream overloaded")
    upstream.push(reply, reply)

    def consume(client):
        seen = []
        try:
            for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                seen.append(chunk.model_dump())
        except Exception as exc:
            return seen, type(exc), str(exc)
        return seen, None, None

    expected, got = consume(raw), consume(wrapped)
    assert got == expected and expected[1] is openai.APIError
    [row] = stored(db)
    assert row.status == "error" and "upstream overloaded" in row.error
    assert row.response_content == "Partial answer then trouble"[:12]  # 3 text chunks of 4 characters came


def test_dropped_connection_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="This answer is cut short", drop_after=3, serial=5)
    upstream.push(reply, reply)

    def consume(client):
        seen = []
        try:
            for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                seen.append(chunk.model_dump())
        except Exception as exc:
            return seen, type(exc)
        return seen, None

    expected, got = consume(raw), consume(wrapped)
    assert got == expected and expected[1] is openai.APIConnectionError
    [row] = stored(db)
    assert row.status == "incomplete" and row.response_content == "This answer "[:8]
    assert row.error


def test_connection_refused_is_stored_as_error(db):
    wrapped = wrapper.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, wilson_db=db)
    with pytest.raises(openai.APIConnectionError):
        wrapped.chat.completions.create(model="m", messages=MESSAGES)
    [row] = stored(db)
    assert row.status == "error" and "Connect" in row.error


# -- the app abandons a stream ----------------------------------------------------------------


def test_abandoned_stream_closed_by_the_app(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="one two three four five six", fragment=4, delay=0.001))
    stream = wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    for n, _ in enumerate(stream):
        if n == 2:
            break
    stream.close()
    [row] = stored(db)
    assert row.status == "incomplete" and "closed" in row.error
    assert "one two three four five six".startswith(row.response_content or "")
    assert len(row.response_content or "") < len("one two three four five six")


def test_abandoned_stream_in_a_with_block(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="alpha beta gamma delta", fragment=3))
    with wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        next(iter(stream))
        next(iter(stream))
    [row] = stored(db)
    assert row.status == "incomplete"


def test_stream_dropped_without_close_is_recorded_when_collected(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="never read to the end", fragment=3))

    def start():
        stream = wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        next(iter(stream))

    start()
    gc.collect()
    [row] = stored(db)
    assert row.status == "incomplete"


def test_stream_read_to_done_then_closed_is_complete(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="complete"))
    with wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        list(stream)
    [row] = stored(db)
    assert row.status == "ok" and row.response_content == "complete"


def test_async_stream_abandoned(upstream, db):
    _, wrapped = clients(upstream, db, cls=(openai.AsyncOpenAI, wrapper.AsyncOpenAI))
    upstream.push(Scripted(text="a b c d e f g h", fragment=2))

    async def main():
        stream = await wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async for _ in stream:
            break
        await stream.close()

    asyncio.run(main())
    [row] = stored(db)
    assert row.status == "incomplete"


# -- the Responses API --------------------------------------------------------------------


RESPONSES_TOOLS = [{"type": "function", "name": "get_balance", "description": "Balance of an account",
                    "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_responses_create(upstream, db, stream):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Checking.", tool_calls=[("get_balance", {"account": "chk-1"})], piece=6, serial=4)
    upstream.push(reply, reply)
    kwargs = dict(model="gpt-test", instructions="You are Wilson.", input="My balance?", tools=RESPONSES_TOOLS)
    if stream:
        expected = dumps(raw.responses.create(stream=True, **kwargs))
        got = dumps(wrapped.responses.create(stream=True, **kwargs))
    else:
        expected = raw.responses.create(**kwargs).model_dump()
        got = wrapped.responses.create(**kwargs).model_dump()
    assert got == expected
    [row] = stored(db)
    assert row.status == "ok" and row.response_content == "Checking."
    assert list(row.messages) == [{"role": "system", "content": "You are Wilson."},
                                  {"role": "user", "content": "My balance?"}]
    assert row.tools[0]["function"]["name"] == "get_balance"
    assert [(c.id, c.name, c.arguments) for c in row.tool_calls] == [("call_0004_0", "get_balance", {"account": "chk-1"})]
    assert (row.input_tokens, row.output_tokens) == (21, 7)
    assert (row.ttft_ms is not None) is stream


def test_responses_function_call_output_is_linked(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text=None, tool_calls=[("get_balance", {"account": "chk-1"})]), Scripted(text="1,204.50 EUR"))
    with wilson_core.run(call_type="agent"):
        first = wrapped.responses.create(model="m", input="My balance?", tools=RESPONSES_TOOLS)
        call = first.output[0]
        second = wrapped.responses.create(model="m", tools=RESPONSES_TOOLS, input=[
            {"role": "user", "content": "My balance?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "1204.50"},
        ])
    assert second.output_text == "1,204.50 EUR"
    rows = stored(db)
    assert [r.sequence_num for r in rows] == [1, 2] and rows[0].run_id == rows[1].run_id
    [result] = tool_results(db, rows[0].id)
    assert (result.tool_call_id, result.name, result.content) == (call.call_id, "get_balance", "1204.50")


# -- runs, tool results, exports -------------------------------------------------------------


def agent_run(client, stream):
    """Wilson's agent loop over the SDK: tool calls, results pasted back, final answer."""
    messages = list(MESSAGES)
    with wilson_core.run(call_type="agent", metadata={"user": "u1"}) as run:
        for _ in range(3):
            kwargs = dict(model="gpt-test", messages=messages, tools=TOOLS)
            if stream:
                text, calls = "", {}
                for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs):
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        for tc in choice.delta.tool_calls or ():
                            entry = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                            entry["arguments"] += tc.function.arguments or ""
                tool_calls = [calls[i] for i in sorted(calls)]
            else:
                message = client.chat.completions.create(**kwargs).choices[0].message
                text = message.content or ""
                tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                              for c in message.tool_calls or ()]
            if not tool_calls:
                return run.id, text
            messages.append({"role": "assistant", "content": text or None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in tool_calls]})
            for c in tool_calls:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps({"ok": c["name"]})})
    raise AssertionError("the agent did not finish")


def script_agent(upstream, piece=None):
    upstream.push(
        Scripted(text=None, tool_calls=PARALLEL.tool_calls, serial=11, piece=piece, fragment=2),
        Scripted(text="Balance 1,204.50 EUR; May spending 412.50 EUR.", serial=12, piece=piece),
    )


def sft_lines(db, run_id):
    pytest.importorskip("wilson_exporters")
    from wilson_core.exporting import ExportOptions, iter_records

    store = wilson_core.open_store(db)
    try:
        records = list(iter_records(store, ExportOptions(format="sft", granularity="run")))
    finally:
        store.close()
    return [json.dumps(r, sort_keys=True) for r in records]


def test_agent_run_groups_calls_and_records_tool_results(upstream, db):
    _, wrapped = clients(upstream, db)
    script_agent(upstream, piece=5)
    run_id, answer = agent_run(wrapped, stream=True)
    rows = stored(db)
    assert [(r.run_id, r.sequence_num, r.call_type) for r in rows] == [(run_id, 1, "agent"), (run_id, 2, "agent")]
    results = tool_results(db, rows[0].id)
    assert sorted((r.tool_call_id, r.name, r.content) for r in results) == [
        ("call_0011_0", "get_balance", '{"ok": "get_balance"}'),
        ("call_0011_1", "get_transactions", '{"ok": "get_transactions"}'),
    ]
    store = wilson_core.open_store(db)
    assert store.get_run(run_id).metadata == {"user": "u1"}
    store.close()
    assert rows[1].response_content == answer


def test_streamed_agent_run_exports_the_same_sft_line_as_non_streamed(upstream, tmp_path):
    lines = {}
    for stream in (False, True):
        db = str(tmp_path / f"stream-{stream}.db")
        client = wrapper.OpenAI(base_url=upstream.openai_url, api_key="k", max_retries=0, wilson_db=db)
        script_agent(upstream, piece=3 if stream else None)
        run_id, _ = agent_run(client, stream)
        lines[stream] = sft_lines(db, run_id)
    assert len(lines[False]) == 1
    assert lines[True] == lines[False]
    line = json.loads(lines[True][0])
    roles = [m["role"] for m in line["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]


# -- never break the app ------------------------------------------------------------------


def test_a_failing_sink_never_reaches_the_app(upstream, db):
    from wilson_core import hookimpl, plugins

    class Broken:
        @hookimpl
        def wilson_capture_interaction(self, interaction, db_path):
            raise RuntimeError("disk on fire")

    manager = plugins.plugin_manager()
    broken = Broken()
    manager.register(broken, name="broken-sink")
    try:
        before = capture.capture_failures()
        _, wrapped = clients(upstream, db)
        upstream.push(Scripted(text="still fine"), Scripted(text="streamed fine"))
        assert wrapped.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "still fine"
        chunks = list(wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed fine"
        assert capture.capture_failures() >= before + 2
    finally:
        manager.unregister(broken)
    assert len(stored(db)) == 2  # the SQLite sink still wrote both


def test_wrap_twice_and_copies_capture_once(upstream, db):
    client = openai.OpenAI(base_url=upstream.openai_url, api_key="k", max_retries=0)
    assert wrapper.wrap(wrapper.wrap(client, db=db), db=db) is client
    copy = client.with_options(timeout=5)
    upstream.push(Scripted(text="one"), Scripted(text="two"))
    client.chat.completions.create(model="m", messages=MESSAGES)
    copy.chat.completions.create(model="m", messages=MESSAGES)
    assert [r.response_content for r in stored(db)] == ["one", "two"]


def test_wrapped_client_is_still_the_sdk_type(upstream, db):
    _, wrapped = clients(upstream, db)
    assert isinstance(wrapped, openai.OpenAI)
    assert isinstance(wrapper.AsyncOpenAI(api_key="k"), openai.AsyncOpenAI)


def test_responses_stream_helper_and_raw_response_are_captured(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="helper text", piece=4), Scripted(text="raw text"))
    with wrapped.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    raw = wrapped.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.status_code == 200 and raw.parse().choices[0].message.content == "raw text"
    rows = stored(db)
    assert [r.response_content for r in rows] == [final.output_text, "raw text"] == ["helper text", "raw text"]


def test_a_request_wilson_cannot_read_still_goes_through(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="the upstream answered anyway", serial=1)
    upstream.push(reply, reply)
    before = capture.capture_failures()
    # messages that are not a list: the SDK sends them, Wilson's converter refuses them
    got = wrapped.chat.completions.create(model="m", messages="not a list of messages")
    assert got.model_dump() == raw.chat.completions.create(model="m", messages="not a list of messages").model_dump()
    assert capture.capture_failures() == before + 1
    assert stored(db) == []


@pytest.mark.parametrize("stream,body,status,content", [
    (True, b'data: {"choices": [{"index": 0, "delta": {"content": "ok"}}]}\n\ndata: {not json\n\n',
     "incomplete", "ok"),
    (False, b'{"choices": [{"index": 0, "message": {"content": "cut', "error", None),
])
def test_garbage_from_the_upstream_reaches_the_app_as_without_wilson(db, stream, body, status, content):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    kind = b"text/event-stream" if stream else b"application/json"

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%s" % (kind, len(body), body))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    raw = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    wrapped = wrapper.OpenAI(base_url=url, api_key="k", max_retries=0, wilson_db=db)

    def consume(client):
        seen = []
        try:
            if not stream:
                return client.chat.completions.create(model="m", messages=MESSAGES).model_dump(), None
            for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                seen.append(chunk.model_dump())
        except Exception as exc:
            return seen, type(exc).__name__
        return seen, None

    assert consume(wrapped) == consume(raw)
    thread.join(5)
    listener.close()
    [row] = stored(db)
    assert row.response_content == content and row.status == status


def test_cancelled_async_stream_is_incomplete(upstream, db):
    _, wrapped = clients(upstream, db, cls=(openai.AsyncOpenAI, wrapper.AsyncOpenAI))
    upstream.push(Scripted(text="slow slow slow slow", fragment=5, delay=0.05))

    async def main():
        first = asyncio.Event()

        async def reader():
            async for _ in await wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                first.set()

        task = asyncio.create_task(reader())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    gc.collect()
    [row] = stored(db)
    assert row.status == "incomplete" and "slow slow slow slow".startswith(row.response_content or "")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    calls=st.lists(st.tuples(st.sampled_from(["get_balance", "get_transactions"]),
                             st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=12)),
                                             max_size=3)), max_size=3),
    piece=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    fragment=st.integers(min_value=1, max_value=9),
)
@example(text="NUL \x00 and é", calls=[("get_balance", {"": "\x00"})], piece=1, fragment=1)
def test_what_is_stored_is_what_the_app_assembled(upstream, tmp_path_factory, text, calls, piece, fragment):
    if text is None and not calls:
        text = "x"
    db = str(tmp_path_factory.mktemp("prop") / "wilson.db")
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text=text, tool_calls=calls, piece=piece, fragment=fragment))
    content, tool_calls = "", {}
    for chunk in wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or ():
                entry = tool_calls.setdefault(tc.index, [tc.id, tc.function.name, ""])
                entry[2] += tc.function.arguments or ""
    [row] = stored(db)
    assert row.status == "ok"
    assert content == (text or "")
    # stored through Wilson's one text boundary (NUL and lone surrogates become U+FFFD)
    assert (row.response_content or "") == clean_text(content)
    assert [(c.id, c.name, c.arguments) for c in row.tool_calls] == [
        (i, n, clean_json(json.loads(a))) for i, n, a in (tool_calls[k] for k in sorted(tool_calls))]
