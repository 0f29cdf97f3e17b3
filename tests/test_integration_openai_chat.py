"""The OpenAI wrapper on chat completions (not streamed) with the official ``openai`` SDK
against a real local upstream: HTTP errors, agent runs and their exports, and what must
never break the app.

Every test makes the same call through a plain SDK client and through the
wrapped one (the upstream answers both with byte-identical replies) and
checks that the app gets exactly the same thing, then what was stored.
"""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai")

from openai_wrapper_support import MESSAGES, PARALLEL, TOOLS, clients  # noqa: E402
from stored_calls import stored, tool_results  # noqa: E402

import wilson_core  # noqa: E402
from wilson_core import capture  # noqa: E402
from wilson_core.integrations import openai as wrapper  # noqa: E402
from wilson_core.testing.upstreams import Scripted  # noqa: E402


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


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


# -- errors --------------------------------------------------------------------------------


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


def test_connection_refused_is_stored_as_error(db):
    wrapped = wrapper.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, wilson_db=db)
    with pytest.raises(openai.APIConnectionError):
        wrapped.chat.completions.create(model="m", messages=MESSAGES)
    [row] = stored(db)
    assert row.status == "error" and "Connect" in row.error


# -- runs, tool results, exports -----------------------------------------------------------


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


# -- never break the app -------------------------------------------------------------------


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
