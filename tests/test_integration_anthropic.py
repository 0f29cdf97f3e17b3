"""The Anthropic wrapper with the official ``anthropic`` SDK against a real local upstream."""

from __future__ import annotations

import asyncio
import json

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

from stored_calls import stored, tool_results  # noqa: E402

import wilson_core  # noqa: E402
from wilson_core.integrations import anthropic as wrapper  # noqa: E402
from wilson_core.integrations import openai as openai_wrapper  # noqa: E402
from wilson_core.testing.upstreams import Scripted  # noqa: E402

SYSTEM = "You are Wilson, a finance assistant."
QUESTION = "What is my balance, and what did I spend in May?"
TOOLS = [
    {"name": "get_balance", "description": "Balance of an account",
     "input_schema": {"type": "object", "properties": {"account": {"type": "string"}}}},
    {"name": "get_transactions", "description": "Transactions",
     "input_schema": {"type": "object", "properties": {"month": {"type": "string"}}}},
]
CALLS = [("get_balance", {"account": "chk-1"}), ("get_transactions", {"month": "2025-05", "note": "ünï"})]
FINAL = "Balance 1,204.50 EUR; May spending 412.50 EUR."


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


def clients(upstream, db, asynchronous=False):
    options = dict(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    if asynchronous:
        return anthropic.AsyncAnthropic(**options), wrapper.AsyncAnthropic(wilson_db=db, **options)
    return anthropic.Anthropic(**options), wrapper.Anthropic(wilson_db=db, **options)


def create_kwargs(**extra):
    kwargs = dict(model="claude-test", max_tokens=256, system=SYSTEM, tools=TOOLS,
                  messages=[{"role": "user", "content": QUESTION}])
    kwargs.update(extra)
    return kwargs


def test_create_with_parallel_tool_use(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Let me check.", tool_calls=CALLS, serial=3)
    upstream.push(reply, reply)
    expected = raw.messages.create(**create_kwargs(stop_sequences=["END"]))
    got = wrapped.messages.create(**create_kwargs(stop_sequences=["END"]))
    assert type(got) is type(expected) and got.model_dump() == expected.model_dump()
    [row] = stored(db)
    assert row.provider == "anthropic" and row.model == "claude-test" and row.status == "ok"
    assert list(row.messages) == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    assert [t["function"]["name"] for t in row.tools] == ["get_balance", "get_transactions"]
    assert row.tools[0] == {"type": "function", "function": {
        "name": "get_balance", "description": "Balance of an account", "parameters": TOOLS[0]["input_schema"]}}
    assert row.params == {"max_tokens": 256, "stop_sequences": ["END"]}
    assert row.response_content == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in row.tool_calls] == [
        ("toolu_0003_0", "get_balance", {"account": "chk-1"}),
        ("toolu_0003_1", "get_transactions", {"month": "2025-05", "note": "ünï"})]
    assert (row.input_tokens, row.output_tokens) == (21, 7)


@pytest.mark.parametrize("piece", [None, 1, 5])
def test_create_stream_split_anywhere(upstream, db, piece):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Let me check.", tool_calls=CALLS, serial=4, piece=piece, fragment=3)
    upstream.push(reply, reply)
    expected = [e.model_dump() for e in raw.messages.create(**create_kwargs(stream=True))]
    stream = wrapped.messages.create(**create_kwargs(stream=True))
    assert type(stream) is anthropic.Stream
    got = [e.model_dump() for e in stream]
    assert got == expected
    partial = [e["delta"]["partial_json"] for e in expected
               if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"]
    assert len([p for p in partial if p]) > 4
    [row] = stored(db)
    assert row.status == "ok" and row.response_content == "Let me check."
    assert [(c.name, c.arguments) for c in row.tool_calls] == [(n, a) for n, a in CALLS]
    assert (row.input_tokens, row.output_tokens) == (21, 7)
    assert 0 < row.ttft_ms <= row.duration_ms


def test_messages_stream_helper(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Streaming through the helper.", piece=7, serial=5)
    upstream.push(reply, reply)

    def run(client):
        with client.messages.stream(model="claude-test", max_tokens=64,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message().model_dump()

    assert run(wrapped) == run(raw)
    [row] = stored(db)
    assert row.response_content == "Streaming through the helper." and row.status == "ok"


def test_async_create_and_stream(upstream, db):
    raw, wrapped = clients(upstream, db, asynchronous=True)
    reply = Scripted(text="Async.", tool_calls=CALLS[:1], piece=4, serial=6)

    async def main():
        upstream.push(reply, reply, reply, reply)
        out = []
        for client in (raw, wrapped):
            out.append((await client.messages.create(**create_kwargs())).model_dump())
            async with client.messages.stream(**create_kwargs()) as stream:
                out.append((await stream.get_final_message()).model_dump())
        return out

    a, b, c, d = asyncio.run(main())
    assert (a, b) == (c, d)
    rows = stored(db)
    assert [(r.status, r.response_content, r.tool_calls[0].name) for r in rows] == [
        ("ok", "Async.", "get_balance")] * 2


@pytest.mark.parametrize("status,error", [(429, anthropic.RateLimitError), (500, anthropic.InternalServerError)])
def test_http_errors(upstream, db, status, error):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(status=status, error="try later")
    upstream.push(reply, reply)

    def outcome(client):
        try:
            client.messages.create(**create_kwargs())
        except Exception as exc:
            return type(exc), str(exc), exc.status_code
        return None

    got = outcome(wrapped)
    assert got == outcome(raw) and got[0] is error and got[2] == status
    [row] = stored(db)
    assert row.status == "error" and f"HTTP {status}" in row.error and "try later" in row.error


def consume(client, **extra):
    seen = []
    try:
        for event in client.messages.create(**create_kwargs(stream=True, **extra)):
            seen.append(event.model_dump())
    except Exception as exc:
        return seen, type(exc), str(exc)
    return seen, None, None


def test_error_event_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Half an answer", error_after=5, error="Overloaded", serial=8)
    upstream.push(reply, reply)
    expected, got = consume(raw), consume(wrapped)
    assert got == expected and expected[1] is not None
    [row] = stored(db)
    assert row.status == "error" and "Overloaded" in row.error
    assert row.response_content == "Half an answer"[:8]  # message_start, block start, ping, 2 deltas


def test_dropped_connection_mid_stream(upstream, db):
    raw, wrapped = clients(upstream, db)
    reply = Scripted(text="Cut short here", drop_after=4, serial=9)
    upstream.push(reply, reply)
    expected, got = consume(raw), consume(wrapped)
    assert got == expected and expected[1] is not None  # (this SDK raises the HTTP library's error)
    [row] = stored(db)
    assert row.status == "incomplete" and row.response_content == "Cut "


def test_abandoned_stream(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="one two three four five", fragment=3))
    with wrapped.messages.stream(model="claude-test", max_tokens=64,
                                 messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream.text_stream:
            break
    [row] = stored(db)
    assert row.status == "incomplete" and row.response_content == "one"


# -- the same agent run through Anthropic and OpenAI exports the same SFT line ------------


def anthropic_agent(client):
    messages = [{"role": "user", "content": QUESTION}]
    with wilson_core.run(call_type="agent") as run:
        first = client.messages.create(model="m", max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
        results = [{"type": "tool_result", "tool_use_id": b.id, "content": json.dumps({"ok": b.name})}
                   for b in first.content if b.type == "tool_use"]
        messages.append({"role": "user", "content": results})
        client.messages.create(model="m", max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
    return run.id


def openai_agent(client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                "parameters": t["input_schema"]}} for t in TOOLS]
    with wilson_core.run(call_type="agent") as run:
        first = client.chat.completions.create(model="m", messages=messages, tools=tools).choices[0].message
        messages.append(first.model_dump(exclude_none=True))
        for call in first.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"ok": call.function.name})})
        client.chat.completions.create(model="m", messages=messages, tools=tools)
    return run.id


def sft(db):
    pytest.importorskip("wilson_exporters")
    from wilson_core.exporting import ExportOptions, iter_records

    store = wilson_core.open_store(db)
    try:
        return list(iter_records(store, ExportOptions(format="sft", granularity="run")))
    finally:
        store.close()


def without_ids(line):
    text = json.dumps(line, sort_keys=True)
    for n, old in enumerate(sorted(set(__import__("re").findall(r'"(?:call|toolu)_[0-9_]+"', text)))):
        text = text.replace(old, f'"id{n}"')
    return json.loads(text)


def test_anthropic_traffic_exports_like_openai_traffic(upstream, tmp_path):
    a_db, o_db = str(tmp_path / "a.db"), str(tmp_path / "o.db")
    upstream.push(Scripted(text=None, tool_calls=CALLS, serial=20), Scripted(text=FINAL, serial=21))
    a_run = anthropic_agent(wrapper.Anthropic(base_url=upstream.url, api_key="k", max_retries=0, wilson_db=a_db))
    upstream.push(Scripted(text=None, tool_calls=CALLS, serial=20), Scripted(text=FINAL, serial=21))
    o_run = openai_agent(openai_wrapper.OpenAI(base_url=upstream.openai_url, api_key="k", max_retries=0, wilson_db=o_db))
    [a_line], [o_line] = sft(a_db), sft(o_db)
    assert without_ids(a_line) == without_ids(o_line)
    assert [m["role"] for m in a_line["messages"]] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert a_line["messages"][3]["name"] == "get_balance"
    # the tool results were linked without any code in the app
    a_rows = stored(a_db)
    assert [r.run_id for r in a_rows] == [a_run, a_run]
    assert sorted(r.name for r in tool_results(a_db, a_rows[0].id)) == ["get_balance", "get_transactions"]
    assert o_run


def test_tool_result_error_flag_is_kept(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text=None, tool_calls=CALLS[:1]), Scripted(text="Sorry."))
    with wilson_core.run():
        first = wrapped.messages.create(**create_kwargs())
        call = first.content[0]
        wrapped.messages.create(**create_kwargs(messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                          "content": [{"type": "text", "text": "account locked"}],
                                          "is_error": True},
                                         {"type": "text", "text": "What now?"}]},
        ]))
    rows = stored(db)
    [result] = tool_results(db, rows[0].id)
    assert (result.name, result.content, result.is_error) == ("get_balance", "account locked", True)
    assert [m["role"] for m in rows[1].messages] == ["system", "user", "assistant", "tool", "user"]
    assert rows[1].messages[-1]["content"] == "What now?"
