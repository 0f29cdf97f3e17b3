"""Streaming in the facade, against real local HTTP servers (SSE and NDJSON).

The upstream is :class:`wilson_core.testing.upstreams.FakeUpstream`: a threaded
HTTP server that streams scripted answers cut into pieces of a few bytes (inside
events, UTF-8 characters and tool-call JSON), with usage-only final chunks,
parallel tool calls, error events, dropped connections and slow writes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest

import wilson_core
from wilson_core.errors import ProviderError
from wilson_core.exporting import ExportOptions, run_export
from wilson_core.records import STATUS_ERROR, STATUS_INCOMPLETE, STATUS_OK
from wilson_core.store import open_store, sink
from wilson_core.streams import StreamCut, TextDelta, ToolCallDelta
from wilson_core.testing.upstreams import FakeUpstream, Scripted

TOOLS = [{"type": "function", "function": {"name": "get_balance", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_rate", "parameters": {"type": "object"}}}]
LONG = "The quick brown fox jumps over the lazy dog, twice: ünïcödé ✓ included. " * 4


@pytest.fixture
def db(captured_db):
    return captured_db


def openai(upstream, db, **options):
    return wilson_core.LLM("openai:gpt-test", db=str(db), base_url=upstream.openai_url, api_key="sk-test", **options)


def ollama(upstream, db):
    return wilson_core.LLM("ollama:llama-test", db=str(db), host=upstream.url)


def ask(text="What is my balance?"):
    return [{"role": "system", "content": "You are Wilson."}, {"role": "user", "content": text}]


def stored(db):
    return list(open_store(db).iter_interactions())


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- complete streams ---------------------------------------------------------------------


def test_text_cut_anywhere_streams_in_order_and_is_recorded_once_with_usage_and_ttft(upstream, db):
    upstream.push(Scripted(text=LONG, piece=7, fragment=3, input_tokens=33, output_tokens=44))
    llm = openai(upstream, db)
    with llm.run() as run:
        stream = run.stream(ask(), temperature=0.2)
        deltas = list(stream)
    assert all(isinstance(d, TextDelta) for d in deltas) and len(deltas) > 20
    assert "".join(d.text for d in deltas) == LONG
    reply = stream.reply
    assert reply.text == LONG and (reply.input_tokens, reply.output_tokens, reply.total_tokens) == (33, 44, 77)
    assert reply.run_id == run.id and stream.status == STATUS_OK
    body = upstream.requests[0].json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    [interaction] = stored(db)
    assert interaction.id == reply.interaction_id and interaction.status == STATUS_OK
    assert interaction.response_content == LONG and interaction.input_tokens == 33
    assert interaction.params == {"temperature": 0.2}  # what the app asked, not the wire's stream keys
    assert 0 < interaction.ttft_ms <= interaction.duration_ms


def test_parallel_tool_calls_with_arguments_split_across_chunks(upstream, db):
    calls = [("get_balance", {"account": "checking", "note": "ä ✓"}), ("get_rate", {"currency": "EUR"})]
    upstream.push(Scripted(text=None, tool_calls=calls, piece=5, fragment=2))
    stream = openai(upstream, db).stream(ask(), tools=TOOLS)
    deltas = list(stream)
    assert all(isinstance(d, ToolCallDelta) for d in deltas)
    assert [d.index for d in deltas] == sorted(d.index for d in deltas)  # call 0's pieces, then call 1's
    assert [(d.id, d.name) for d in deltas if d.name] == [("call_0001_0", "get_balance"), ("call_0001_1", "get_rate")]
    assert sum(1 for d in deltas if d.index == 0 and d.arguments) > 5  # the JSON came in many pieces
    reply = stream.reply
    assert reply.content is None
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_0001_0", "get_balance", {"account": "checking", "note": "ä ✓"}),
        ("call_0001_1", "get_rate", {"currency": "EUR"}),
    ]
    [interaction] = stored(db)
    assert interaction.tool_calls == reply.tool_calls and interaction.tools == tuple(TOOLS)


def test_a_stream_gives_the_same_reply_as_chat(upstream, db):
    scripted = Scripted(text="Two calls and a text.", tool_calls=[("get_rate", {"currency": "EUR"})], serial=7, piece=3)
    upstream.push(scripted, scripted)
    llm = openai(upstream, db)
    chatted = llm.chat(ask(), tools=TOOLS)
    streamed = llm.stream(ask(), tools=TOOLS).until_done()
    keep = ("content", "tool_calls", "input_tokens", "output_tokens", "total_tokens", "model", "provider")
    assert {k: getattr(streamed, k) for k in keep} == {k: getattr(chatted, k) for k in keep}
    assert streamed.message == chatted.message


def test_a_server_that_refuses_stream_options_is_asked_again_without_them(db):
    def responder(request):
        if "stream_options" in request:
            return Scripted(status=400, error="Unrecognized request argument supplied: stream_options")
        return Scripted(text="fine")

    with FakeUpstream(responder=responder) as upstream:
        reply = openai(upstream, db).stream(ask()).until_done()
        assert reply.text == "fine" and reply.input_tokens is None
        assert ["stream_options" in r.json for r in upstream.requests] == [True, False]
    assert stored(db)[0].status == STATUS_OK


def test_ollama_streams_ndjson_with_tool_calls_and_counts(upstream, db):
    upstream.push(Scripted(text="Let me check.", tool_calls=[("get_balance", {"account": "x"})], piece=6,
                           input_tokens=12, output_tokens=5))
    stream = ollama(upstream, db).stream(ask(), tools=TOOLS)
    deltas = list(stream)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Let me check."
    reply = stream.reply
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_balance", {"account": "x"})]
    assert (reply.input_tokens, reply.output_tokens) == (12, 5)
    assert upstream.requests[0].json["stream"] is True
    [interaction] = stored(db)
    assert interaction.status == STATUS_OK and interaction.ttft_ms is not None


# -- failures -----------------------------------------------------------------------------


def test_an_ollama_error_line_mid_stream_is_an_error(upstream, db):
    upstream.push(Scripted(text="abcdefgh", fragment=2, error_after=2, error="model crashed"))

    async def app():
        with pytest.raises(ProviderError, match="model crashed"):
            await ollama(upstream, db).astream(ask()).until_done()

    asyncio.run(app())
    [interaction] = stored(db)
    assert interaction.status == STATUS_ERROR and interaction.response_content == "abcd"


def test_an_error_event_mid_stream_raises_and_is_recorded_as_an_error_with_the_partial_text(upstream, db):
    upstream.push(Scripted(text="partial answer that never ends", fragment=4, error_after=3, error="overloaded"))
    stream = openai(upstream, db).stream(ask())
    seen = []
    with pytest.raises(ProviderError, match="overloaded"):
        for delta in stream:
            seen.append(delta.text)
    assert stream.status == STATUS_ERROR
    [interaction] = stored(db)
    assert interaction.status == STATUS_ERROR and "overloaded" in interaction.error
    assert interaction.response_content == "".join(seen) == "partial "
    with pytest.raises(wilson_core.errors.WilsonError, match="failed"):
        _ = stream.reply


@pytest.mark.parametrize("kind", ["openai", "ollama"])
@pytest.mark.parametrize("status", [429, 500])
def test_an_http_error_before_the_stream_is_recorded_as_an_error(upstream, db, status, kind):
    upstream.push(Scripted(status=status, error="try later"))
    llm = openai(upstream, db) if kind == "openai" else ollama(upstream, db)
    with pytest.raises(ProviderError, match=f"HTTP {status}.*try later"):
        list(llm.stream(ask()))
    [interaction] = stored(db)
    assert interaction.status == STATUS_ERROR and interaction.response_content is None


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_dropped_connection_is_recorded_as_incomplete(upstream, db, kind):
    upstream.push(Scripted(text="abcdefghijklmnopqrstuvwxyz", fragment=2, drop_after=4))
    llm = openai(upstream, db) if kind == "openai" else ollama(upstream, db)
    stream = llm.stream(ask())
    seen = []
    with pytest.raises(StreamCut):
        for delta in stream:
            seen.append(delta.text)
    assert stream.status == STATUS_INCOMPLETE
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and interaction.error
    assert interaction.response_content == "".join(seen) and seen


# -- the app stops reading ---------------------------------------------------------------


def test_breaking_out_of_the_loop_records_the_partial_answer_and_closes_the_connection(upstream, db):
    upstream.push(Scripted(text=LONG, fragment=5, delay=0.02))
    llm = openai(upstream, db)
    seen = []
    with llm.stream(ask()) as stream:
        for delta in stream:
            seen.append(delta.text)
            if len(seen) == 3:
                break
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and "stopped reading" in interaction.error
    assert interaction.response_content == "".join(seen) == LONG[:15]
    assert stream.reply.text == LONG[:15]  # a reply with what came
    assert wait_for(lambda: upstream.disconnects == 1)  # the server saw the client go


def test_a_dropped_stream_object_is_recorded_without_with_or_close(upstream, db):
    upstream.push(Scripted(text=LONG, fragment=5, delay=0.01))
    for delta in openai(upstream, db).stream(ask()):
        assert delta.text == LONG[:5]
        break
    [interaction] = stored(db)  # recorded as soon as the loop let go of the stream
    assert interaction.status == STATUS_INCOMPLETE and interaction.response_content == LONG[:5]


def test_an_exception_in_the_app_loop_records_the_stream_as_incomplete(upstream, db):
    upstream.push(Scripted(text=LONG, fragment=5, delay=0.01))

    def app():
        with openai(upstream, db).stream(ask()) as stream:
            for _ in stream:
                raise KeyError("app bug")

    with pytest.raises(KeyError, match="app bug"):
        app()
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and interaction.response_content == LONG[:5]


def test_a_stream_never_read_is_recorded_when_closed(upstream, db):
    stream = openai(upstream, db).stream(ask())
    stream.close()
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and interaction.response_content is None
    assert upstream.requests == []  # nothing was sent: the request starts with the first read


def test_abandoned_streams_leave_no_thread_or_connection_behind(upstream, db):
    llm = openai(upstream, db)
    list(llm.stream(ask()))  # warm: the client and its pool exist
    before = threading.active_count()
    for n in range(20):
        upstream.push(Scripted(text=LONG, fragment=3, delay=0.005))
        for i, _ in enumerate(llm.stream(ask())):
            if i == n % 4:
                break
    assert threading.active_count() == before
    pool = llm.provider._client._transport._pool
    assert wait_for(lambda: not any(c.is_idle() is False and not c.is_closed() for c in pool.connections))
    assert [i.status for i in stored(db)].count(STATUS_INCOMPLETE) == 20


# -- async ---------------------------------------------------------------------------


def test_astream_reads_the_same_answer_and_records_it(upstream, db):
    upstream.push(Scripted(text=None, tool_calls=[("get_balance", {"a": 1}), ("get_rate", {"b": 2})], piece=4))

    async def app():
        llm = openai(upstream, db)
        async with llm.run() as run:
            stream = run.astream(ask(), tools=TOOLS)
            deltas = [d async for d in stream]
            return run.id, deltas, stream.reply

    run_id, deltas, reply = asyncio.run(app())
    assert {d.index for d in deltas} == {0, 1}
    assert [c.arguments for c in reply.tool_calls] == [{"a": 1}, {"b": 2}]
    [interaction] = stored(db)
    assert interaction.run_id == run_id and interaction.status == STATUS_OK and interaction.input_tokens == 21


def test_cancelling_the_task_records_the_stream_as_incomplete_and_closes_it(upstream, db):
    upstream.push(Scripted(text=LONG, fragment=5, delay=0.03))
    seen = []

    async def reader(llm):
        async for delta in llm.astream(ask()):
            seen.append(delta.text)

    async def app():
        llm = openai(upstream, db)
        task = asyncio.create_task(reader(llm))
        while len(seen) < 2:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(app())
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and "cancelled" in interaction.error
    assert interaction.response_content == "".join(seen)
    assert wait_for(lambda: upstream.disconnects == 1)


def test_breaking_out_of_async_with_records_the_partial_answer(upstream, db):
    upstream.push(Scripted(text=LONG, fragment=5, delay=0.02))

    async def app():
        async with openai(upstream, db).astream(ask()) as stream:
            async for _ in stream:
                break
        return stream

    stream = asyncio.run(app())
    assert stream.status == STATUS_INCOMPLETE and stream.reply.text == LONG[:5]
    assert stored(db)[0].response_content == LONG[:5]


def test_an_async_stream_dropped_after_break_is_recorded_and_its_connection_closed(upstream, db):
    upstream.push(Scripted(text=LONG * 3, fragment=5, delay=0.02))

    async def app():
        async for _ in openai(upstream, db).astream(ask()):
            break
        # recorded right away, not when the loop closes (plain sqlite3: a quick look, the loop goes on)
        recorded = [row[0] for row in sqlite3.connect(db).execute("SELECT status FROM interactions")]
        for _ in range(50):
            await asyncio.sleep(0.02)
            if upstream.disconnects:
                break
        return recorded

    assert asyncio.run(app()) == [STATUS_INCOMPLETE]
    assert stored(db)[0].response_content == LONG[:5]
    assert wait_for(lambda: upstream.disconnects == 1)


def test_capture_off_streams_and_writes_nothing(upstream, db):
    upstream.push(Scripted(text="not kept", piece=2))
    stream = openai(upstream, db, capture=False).stream(ask())
    assert "".join(d.text for d in stream) == "not kept" and stream.reply.text == "not kept"
    assert not db.exists()


def test_ollama_astream_and_a_dropped_async_connection(upstream, db):
    upstream.push(Scripted(text="Hello there", piece=3), Scripted(text="abcdefgh", fragment=2, drop_after=2))

    async def app():
        llm = ollama(upstream, db)
        first = await llm.astream(ask()).until_done()
        with pytest.raises(StreamCut):
            await llm.astream(ask()).until_done()
        return first

    assert asyncio.run(app()).text == "Hello there"
    assert sorted(i.status for i in stored(db)) == [STATUS_INCOMPLETE, STATUS_OK]


# -- scripted, the default and sync-only providers -----------------------------------------


def test_scripted_streams_in_chunks_sync_and_async(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["abcdefghij"], cycle=True, chunk_chars=3)
    assert [d.text for d in llm.stream(ask())] == ["abc", "def", "ghi", "j"]

    async def app():
        return [d.text async for d in llm.astream(ask())]

    assert asyncio.run(app()) == ["abc", "def", "ghi", "j"]
    assert [i.status for i in stored(db)] == [STATUS_OK, STATUS_OK]


def test_a_provider_without_streaming_gives_its_answer_as_one_chunk(db):
    from wilson_core.interfaces import Provider
    from wilson_core.records import ProviderResponse, ToolCall

    class Whole(Provider):
        def chat(self, messages, tools, params):
            return ProviderResponse(content="all at once", model="whole-1", input_tokens=3, output_tokens=3,
                                    tool_calls=(ToolCall(id="c1", name="f", arguments={"x": 1}),))

    llm = wilson_core.LLM("scripted:m", db=str(db))
    llm.provider = Whole("whole")
    deltas = list(llm.stream(ask()))
    assert deltas == [TextDelta("all at once"), ToolCallDelta(index=0, id="c1", name="f", arguments='{"x": 1}')]

    async def app():
        return await llm.astream(ask()).until_done()

    reply = asyncio.run(app())
    assert reply.text == "all at once" and reply.tool_calls[0].arguments == {"x": 1} and reply.model == "whole-1"


def test_a_sync_only_stream_read_from_async_code_is_closed_in_its_thread_when_cancelled(db):
    from wilson_core.interfaces import Provider
    from wilson_core.records import ProviderResponse
    from wilson_core.streams import TextDelta as Text

    closed = threading.Event()

    class Tokens(Provider):
        def chat(self, messages, tools, params):
            return ProviderResponse(content="unused")

        def stream(self, messages, tools, params):
            try:
                for n in range(1000):
                    time.sleep(0.01)  # a local model producing tokens
                    yield Text(f"t{n} ")
            finally:
                closed.set()

    llm = wilson_core.LLM("scripted:m", db=str(db))
    llm.provider = Tokens("local")

    async def app():
        seen = []

        async def reader():
            async for delta in llm.astream(ask()):
                seen.append(delta)

        task = asyncio.create_task(reader())
        while len(seen) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(app())
    assert closed.wait(2), "the worker thread did not close the model's generator"
    [interaction] = stored(db)
    assert interaction.status == STATUS_INCOMPLETE and interaction.response_content.startswith("t0 t1 t2 ")


# -- the same training data, streamed or not -------------------------------------------------


def agent_run(llm, stream):
    """The app's agent loop: ask, run the tools the model calls, send their results back."""
    messages = ask("Balance and rate?")
    with llm.run(call_type="agent") as run:
        while True:
            reply = run.stream(messages, tools=TOOLS).until_done() if stream else run.chat(messages, tools=TOOLS)
            messages.append(reply.message)
            if not reply.tool_calls:
                return run.id
            for call in reply.tool_calls:
                messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                 "content": json.dumps({"tool": call.name, "ok": True})})


@pytest.mark.parametrize("granularity", ["interaction", "run"])
def test_a_streamed_agent_run_exports_the_same_sft_lines_as_the_same_run_not_streamed(tmp_path, monkeypatch,
                                                                                      granularity):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    exported = {}
    for stream in (False, True):
        db = tmp_path / f"stream-{stream}.db"
        with FakeUpstream() as upstream:
            upstream.push(
                Scripted(text=None, tool_calls=[("get_balance", {"account": "checking"}), ("get_rate", {"c": "EUR"})],
                         serial=1, piece=3, fragment=2),
                Scripted(text="You have 10 EUR at 3 %. ✓", serial=2, piece=3),
            )
            llm = openai(upstream, db)
            agent_run(llm, stream)
        store = open_store(db)
        assert len(store.tool_results(list(store.iter_interactions())[0].id)) == 2  # from the tool messages
        out = tmp_path / f"sft-{stream}.jsonl"
        run_export(store, ExportOptions(format="sft", granularity=granularity), out)
        exported[stream] = out.read_text(encoding="utf-8").splitlines()
        sink.forget_stores()
    assert exported[True] == exported[False]
    assert exported[True] and "You have 10 EUR" in exported[True][-1]


# -- properties: any cut of the wire gives the same answer ------------------------------------


def test_any_cut_of_an_sse_stream_assembles_to_the_same_answer():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from wilson_core.providers.openai import _SSEChunks
    from wilson_core.streams import StreamAssembler

    # storable text (lone surrogates and NUL are replaced at the text boundary, tested on their own)
    chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    texts = st.text(chars, max_size=40)
    arguments = st.dictionaries(st.text(chars, max_size=5), st.one_of(st.integers(), texts), max_size=3)

    @settings(max_examples=150, deadline=None)
    @given(text=texts, calls=st.lists(arguments, max_size=3), size=st.integers(1, 9), cuts=st.data())
    def check(text, calls, size, cuts):
        def chunk(delta, **extra):
            return "data: " + json.dumps({"model": "m", "choices": [{"index": 0, "delta": delta, **extra}]}) + "\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": text[i:i + size]}) for i in range(0, len(text), size)]
        for index, args in enumerate(calls):
            raw = json.dumps(args)
            events.append(chunk({"tool_calls": [{"index": index, "id": f"c{index}", "function": {"name": "f"}}]}))
            events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": raw[i:i + size]}}]})
                       for i in range(0, len(raw), size)]
        events.append(chunk({}, finish_reason="stop"))
        events.append('data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\ndata: [DONE]\n\n')
        wire = "".join(events).encode()
        points = sorted(cuts.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
        parser, assembled = _SSEChunks("test"), StreamAssembler()
        for start, end in zip([0, *points], [*points, len(wire)], strict=True):
            for event in parser.feed(wire[start:end]):
                assembled.add(event)
        parser.end()
        assert (assembled.text or "") == text
        assert [(c.id, c.name, c.arguments) for c in assembled.tool_calls()] == [
            (f"c{i}", "f", args) for i, args in enumerate(calls)]
        assert (assembled.input_tokens, assembled.output_tokens, assembled.finish_reason) == (3, 4, "stop")

    check()


def test_a_failing_sink_never_reaches_a_streaming_app(upstream, db, caplog):
    import types

    from wilson_core import capture, plugins

    upstream.push(Scripted(text="still fine", piece=3))
    broken = types.SimpleNamespace()

    @wilson_core.hookimpl
    def wilson_capture_interaction(interaction):
        raise RuntimeError("sink exploded")

    broken.wilson_capture_interaction = wilson_capture_interaction
    pm = plugins.plugin_manager()
    pm.register(broken, name="broken-sink")
    before = capture.capture_failures()
    try:
        llm = openai(upstream, db)
        with caplog.at_level("WARNING", logger="wilson"):
            reply = llm.stream(ask()).until_done()
    finally:
        pm.unregister(name="broken-sink")
    assert reply.text == "still fine" and llm.capture_failures == 1
    assert capture.capture_failures() == before + 1 and "sink exploded" in caplog.text
    assert stored(db)[0].response_content == "still fine"  # the other sinks still ran
