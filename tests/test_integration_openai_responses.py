"""The OpenAI wrapper on the Responses API with the official ``openai`` SDK against a real
local upstream: created streamed and not, function call outputs linked to their calls,
the SDK's stream helper and raw responses."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")

from openai_wrapper_support import MESSAGES, clients, dumps  # noqa: E402
from stored_calls import stored, tool_results  # noqa: E402

import wilson_core  # noqa: E402
from wilson_core.testing.upstreams import Scripted  # noqa: E402


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


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


def test_responses_stream_helper_and_raw_response_are_captured(upstream, db):
    _, wrapped = clients(upstream, db)
    upstream.push(Scripted(text="helper text", piece=4), Scripted(text="raw text"))
    with wrapped.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    raw = wrapped.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.status_code == 200 and raw.parse().choices[0].message.content == "raw text"
    rows = stored(db)
    assert [r.response_content for r in rows] == [final.output_text, "raw text"] == ["helper text", "raw text"]
