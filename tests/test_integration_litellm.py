"""LiteLLM's callback with the real ``litellm`` package against a real local upstream."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list
litellm = pytest.importorskip("litellm")

import wilson_core  # noqa: E402
from wilson_core.errors import StoreError  # noqa: E402
from wilson_core.integrations.litellm import WilsonCallback  # noqa: E402
from wilson_core.testing.upstreams import Scripted  # noqa: E402

TOOLS = [{"type": "function", "function": {"name": "get_balance", "description": "Balance",
                                           "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}}]
MESSAGES = [{"role": "system", "content": "You are Wilson."}, {"role": "user", "content": "My balance?"}]
CALLS = [("get_balance", {"account": "chk-1"}), ("get_balance", {"account": "sav-2"})]


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "wilson.db")


def detach(callback):
    """Take the callback out of every list LiteLLM copied it into (``litellm.callbacks = []`` does not)."""
    litellm.callbacks = [c for c in litellm.callbacks if c is not callback]
    litellm.logging_callback_manager.remove_callback_from_all_lists(callback)


@pytest.fixture()
def callback(db):
    made = WilsonCallback(db=db)
    litellm.callbacks = [made]
    yield made
    detach(made)


def stored(db, count, timeout=20.0):
    """The stored interactions once there are ``count`` (LiteLLM reports from a background thread)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        try:
            store = wilson_core.open_store(db)
        except StoreError:  # not there yet, or the sink is creating it right now
            store = None
        if store is not None:
            try:
                rows = list(store.iter_interactions(order_by="i.created_at, i.rowid"))
            finally:
                store.close()
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        time.sleep(0.05)


def options(upstream, **extra):
    return dict(model="openai/fake-model", api_base=upstream.openai_url, api_key="sk-test", **extra)


def test_success_with_parallel_tool_calls(upstream, db, callback):
    reply = Scripted(text="Checking both.", tool_calls=CALLS, serial=3)
    upstream.push(reply, reply)
    got = litellm.completion(messages=MESSAGES, tools=TOOLS, temperature=0.1, **options(upstream))
    [row] = stored(db, 1)
    detach(callback)  # (LiteLLM reports from a background thread: detach only once it has reported)
    expected = litellm.completion(messages=MESSAGES, tools=TOOLS, temperature=0.1, **options(upstream))
    assert got.choices[0].message.model_dump() == expected.choices[0].message.model_dump()
    assert got.usage.model_dump() == expected.usage.model_dump()
    assert (row.provider, row.model, row.status) == ("openai", "fake-model", "ok")
    assert list(row.messages) == MESSAGES and list(row.tools) == TOOLS
    assert row.params.get("temperature") == 0.1
    assert row.response_content == "Checking both."
    assert [(c.id, c.arguments) for c in row.tool_calls] == [
        ("call_0003_0", {"account": "chk-1"}), ("call_0003_1", {"account": "sav-2"})]
    assert (row.input_tokens, row.output_tokens) == (21, 7)
    assert row.duration_ms > 0 and row.ttft_ms is None


def test_stream_split_inside_tool_arguments(upstream, db, callback):
    upstream.push(Scripted(text="Let me see.", tool_calls=CALLS, piece=3, fragment=2, serial=4))
    chunks = list(litellm.completion(messages=MESSAGES, tools=TOOLS, stream=True,
                                     stream_options={"include_usage": True}, **options(upstream)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    [row] = stored(db, 1)
    assert row.status == "ok" and row.response_content == text == "Let me see."
    assert [c.arguments for c in row.tool_calls] == [{"account": "chk-1"}, {"account": "sav-2"}]
    assert (row.input_tokens, row.output_tokens) == (21, 7)  # the upstream's usage-only chunk
    assert row.ttft_ms is not None and row.ttft_ms <= row.duration_ms


@pytest.mark.parametrize("status,error", [(429, "RateLimitError"), (500, "InternalServerError")])
def test_failures_are_stored_and_the_app_gets_the_same_error(upstream, db, callback, status, error):
    reply = Scripted(status=status, error="upstream says no")
    upstream.push(reply, reply)

    def outcome():
        try:
            litellm.completion(messages=MESSAGES, num_retries=0, max_retries=0, **options(upstream))
        except Exception as exc:
            return type(exc).__name__, getattr(exc, "status_code", None)
        return None

    got = outcome()
    [row] = stored(db, 1)
    detach(callback)
    assert got == outcome() == (error, status)
    assert row.status == "error" and "upstream says no" in row.error


def test_async_completion_and_stream(upstream, db, callback):
    upstream.push(Scripted(text="async plain", serial=5), Scripted(text="async streamed", piece=4, serial=6))

    async def main():
        plain = await litellm.acompletion(messages=MESSAGES, **options(upstream))
        parts = []
        async for chunk in await litellm.acompletion(messages=MESSAGES, stream=True, **options(upstream)):
            parts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        await asyncio.sleep(0.2)  # LiteLLM's async callbacks run as tasks
        return plain.choices[0].message.content, "".join(parts)

    assert asyncio.run(main()) == ("async plain", "async streamed")
    rows = stored(db, 2)
    assert sorted(r.response_content for r in rows) == ["async plain", "async streamed"]


def test_run_grouping_and_tool_results(upstream, db, callback):
    upstream.push(Scripted(text=None, tool_calls=CALLS[:1], serial=7), Scripted(text="1,204.50 EUR", serial=8))
    with wilson_core.run(call_type="agent") as run:
        first = litellm.completion(messages=MESSAGES, tools=TOOLS, **options(upstream))
        call = first.choices[0].message.tool_calls[0]
        stored(db, 1)
        messages = [*MESSAGES, first.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "1204.50"}]
        litellm.completion(messages=messages, tools=TOOLS, **options(upstream))
    rows = stored(db, 2)
    assert [(r.run_id, r.sequence_num) for r in rows] == [(run.id, 1), (run.id, 2)]
    store = wilson_core.open_store(db)
    try:
        [result] = store.tool_results(rows[0].id)
    finally:
        store.close()
    assert (result.tool_call_id, result.name, result.content) == ("call_0007_0", "get_balance", "1204.50")


def test_async_failure_is_stored(upstream, db, callback):
    upstream.push(Scripted(status=500, error="async says no"))

    async def main():
        try:
            await litellm.acompletion(messages=MESSAGES, num_retries=0, max_retries=0, **options(upstream))
        except Exception as exc:
            await asyncio.sleep(0.2)
            return type(exc).__name__
        return None

    assert asyncio.run(main()) == "InternalServerError"
    [row] = stored(db, 1)
    assert row.status == "error" and "async says no" in row.error


def test_anthropic_through_litellm_is_stored_in_the_openai_shape(upstream, db, callback):
    upstream.push(Scripted(text="Checking.", tool_calls=CALLS[:1], serial=9))
    reply = litellm.completion(model="anthropic/claude-test", api_base=upstream.url, api_key="sk-ant-test",
                               messages=MESSAGES, tools=TOOLS, max_tokens=64)
    assert upstream.requests[-1].path.endswith("/v1/messages")  # LiteLLM spoke Anthropic's protocol
    [row] = stored(db, 1)
    assert (row.provider, row.status) == ("anthropic", "ok")
    assert list(row.messages) == MESSAGES and list(row.tools) == TOOLS
    assert row.response_content == reply.choices[0].message.content == "Checking."
    assert [(c.id, c.name, c.arguments) for c in row.tool_calls] == [("toolu_0009_0", "get_balance", {"account": "chk-1"})]
