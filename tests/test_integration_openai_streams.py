"""The OpenAI wrapper on streamed chat completions with the official ``openai`` SDK against
a real local upstream: streams cut anywhere, errors and drops mid-stream, streams the app
abandons or cancels, and a property test of what is stored.

Every test reads the same stream through a plain SDK client and through the wrapped one
and checks that the app gets exactly the same chunks, then what was stored.
"""

from __future__ import annotations

import asyncio
import gc
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

openai = pytest.importorskip("openai")

from openai_wrapper_support import MESSAGES, PARALLEL, TOOLS, clients, dumps  # noqa: E402
from stored_calls import stored  # noqa: E402

from wilson_core.integrations import openai as wrapper  # noqa: E402
from wilson_core.testing.upstreams import Scripted  # noqa: E402
from wilson_core.text import clean_json, clean_text  # noqa: E402


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


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


# -- errors --------------------------------------------------------------------------------


def read_stream(client):
    """What the app reads from a stream: the chunks, then the exception it raised (class, message) or None."""
    seen = []
    try:
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            seen.append(chunk.model_dump())
    except Exception as exc:
        return seen, type(exc), str(exc)
    return seen, None, None


def test_error_event_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Partial answer then trouble", error_after=4, serial=2, error="upstream overloaded")
    upstream.push(reply, reply)

    expected, got = read_stream(raw), read_stream(wrapped)
    assert got == expected and expected[1] is openai.APIError
    [row] = stored(db)
    assert row.status == "error" and "upstream overloaded" in row.error
    assert row.response_content == "Partial answer then trouble"[:12]  # 3 text chunks of 4 characters came


def test_dropped_connection_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="This answer is cut short", drop_after=3, serial=5)
    upstream.push(reply, reply)

    expected, got = read_stream(raw), read_stream(wrapped)
    assert got == expected and expected[1] is openai.APIConnectionError
    [row] = stored(db)
    assert row.status == "incomplete" and row.response_content == "This answer "[:8]
    assert row.error


# -- the app abandons a stream -------------------------------------------------------------


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


# -- what is stored ------------------------------------------------------------------------


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
