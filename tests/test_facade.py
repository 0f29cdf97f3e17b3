"""The facade: every call captured with its run, sequence, tools, tokens and errors."""

from __future__ import annotations

import asyncio

import pytest

import wilson_core
from wilson_core.errors import PluginError, ProviderError
from wilson_core.records import STATUS_ERROR, STATUS_OK
from wilson_core.store import open_store, sink

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_balance",
            "description": "Balance of an account",
            "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
        },
    }
]
CALL = {
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_balance", "arguments": '{"account": "checking"}'}}
    ],
}


@pytest.fixture
def db(captured_db):
    return captured_db


def conversation(text="What is my balance?"):
    return [{"role": "system", "content": "You are Wilson."}, {"role": "user", "content": text}]


def test_calls_in_a_run_share_its_id_and_are_numbered(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[CALL, "You have 10 EUR."])
    with llm.run(call_type="agent") as run:
        first = run.chat(conversation(), tools=TOOLS, temperature=0.1)
        result = run.record_tool_result(first.tool_calls[0], {"balance": 10})
        messages = conversation() + [first.message,
                                     {"role": "tool", "tool_call_id": "call_1", "content": "10"}]
        second = run.chat(messages, tools=TOOLS)
    store = open_store(db)
    stored = store.run_interactions(run.id)
    assert [i.sequence_num for i in stored] == [1, 2]
    assert {i.run_id for i in stored} == {run.id} == {first.run_id, second.run_id}
    assert stored[0].tool_calls[0].arguments == {"account": "checking"}
    assert stored[0].tools == tuple(TOOLS)
    assert stored[0].params == {"temperature": 0.1}
    assert stored[0].system_prompt == "You are Wilson."
    assert stored[1].messages[2]["tool_calls"][0]["function"]["arguments"] == {"account": "checking"}
    assert second.text == "You have 10 EUR."
    [linked] = store.tool_results(first.interaction_id)
    assert linked.id == result.id
    assert (linked.tool_call_id, linked.name, linked.content) == ("call_1", "get_balance", '{"balance": 10}')
    assert linked.arguments == {"account": "checking"}
    run_row = store.get_run(run.id)
    assert run_row.call_type == "agent" and run_row.ended_at is not None


def test_calls_outside_a_run_each_get_their_own_run(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["a", "b", "c"], call_type="summarize")
    replies = [llm.chat(conversation(f"q{n}")) for n in range(3)]
    assert len({r.run_id for r in replies}) == 3
    store = open_store(db)
    for reply in replies:
        [interaction] = store.run_interactions(reply.run_id)
        assert interaction.sequence_num == 1
        assert interaction.call_type == "summarize"
        assert store.get_run(reply.run_id).call_type == "summarize"


def test_the_reply_gives_text_tool_calls_tokens_and_duration(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["three word answer"])
    reply = llm.chat(conversation())
    assert reply.text == "three word answer"
    assert reply.tool_calls == ()
    assert (reply.input_tokens, reply.output_tokens, reply.total_tokens) == (7, 3, 10)
    assert reply.duration_ms >= 0
    stored = open_store(db).get_interaction(reply.interaction_id)
    assert (stored.input_tokens, stored.output_tokens, stored.total_tokens) == (7, 3, 10)
    assert stored.status == STATUS_OK and stored.provider == "scripted" and stored.model == "m"


def test_a_failed_provider_call_is_recorded_as_an_error_and_re_raised(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[{"error": "rate limited"}])
    with llm.run() as run, pytest.raises(ProviderError, match="rate limited"):
        run.chat(conversation())
    [failed] = open_store(db).run_interactions(run.id)
    assert failed.status == STATUS_ERROR
    assert "rate limited" in failed.error
    assert failed.response_content is None
    assert failed.messages[-1]["content"] == "What is my balance?"


def test_a_tool_result_for_an_unknown_call_is_refused(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["x"])
    with llm.run() as run, pytest.raises(KeyError, match="nope"):
        run.record_tool_result("nope", "content")


def test_async_apps_use_achat_and_async_with(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[CALL, "done", "standalone"], latency_s=0.01)

    async def app():
        async with llm.run(call_type="agent") as run:
            first = await run.achat(conversation(), tools=TOOLS)
            run.record_tool_result(first.tool_calls[0], "10 EUR")
            second = await run.achat(conversation() + [first.message])
        alone = await llm.achat(conversation("other"))
        return run.id, first, second, alone

    run_id, first, second, alone = asyncio.run(app())
    store = open_store(db)
    assert [i.id for i in store.run_interactions(run_id)] == [first.interaction_id, second.interaction_id]
    assert store.tool_results(first.interaction_id)[0].content == "10 EUR"
    assert alone.run_id != run_id and alone.text == "standalone"
    assert store.get_run(run_id).ended_at is not None


def test_async_failures_are_recorded_too(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[{"error": "boom"}])

    async def app():
        return await llm.achat(conversation())

    with pytest.raises(ProviderError, match="boom"):
        asyncio.run(app())
    [row] = open_store(db).iter_interactions()
    assert row.status == STATUS_ERROR


def test_capture_off_forwards_the_call_and_writes_nothing(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["x"], capture=False)
    assert llm.chat(conversation()).text == "x"
    assert not db.exists()


def test_threads_in_one_run_get_distinct_sequence_numbers(db):
    import threading

    llm = wilson_core.LLM("scripted:m", db=str(db), script=["x"], cycle=True)
    with llm.run() as run:
        threads = [threading.Thread(target=lambda: [run.chat(conversation()) for _ in range(10)])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    numbers = [i.sequence_num for i in open_store(db).run_interactions(run.id)]
    assert sorted(numbers) == list(range(1, 41))


@pytest.mark.parametrize("spec", ["no-colon", "", None])
def test_a_provider_must_be_written_name_colon_model(spec):
    with pytest.raises(PluginError, match="NAME:MODEL"):
        wilson_core.LLM(spec)  # type: ignore[arg-type]


def test_an_unknown_provider_lists_the_available_ones():
    with pytest.raises(PluginError) as error:
        wilson_core.LLM("nosuchprovider:model")
    message = str(error.value)
    assert "nosuchprovider" in message
    for name in ("openai", "ollama", "scripted"):
        assert name in message


def test_call_types_default_to_the_seed_values():
    from wilson_core.records import DEFAULT_CALL_TYPES

    assert DEFAULT_CALL_TYPES == ("agent", "summarize", "relevance", "categorize")


def test_a_standalone_call_can_record_its_tool_results_too(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[CALL])
    reply = llm.chat(conversation(), tools=TOOLS)
    result = llm.record_tool_result(reply.tool_calls[0], "10 EUR", duration_ms=3.5)
    [stored] = open_store(db).tool_results(reply.interaction_id)
    assert stored.id == result.id and stored.content == "10 EUR" and stored.duration_ms == 3.5
    with pytest.raises(KeyError, match="recent standalone"):
        llm.record_tool_result("call_unknown", "x")


def test_any_text_is_stored_and_read_back_as_valid_utf8(tmp_path_factory, monkeypatch):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from wilson_core.messages import clean_text

    folder = tmp_path_factory.mktemp("any-text")
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(folder / "spool"))
    llm = wilson_core.LLM("scripted:m", db=str(folder / "d.db"), script=lambda m, t: m[-1]["content"])
    store = open_store(folder / "d.db")

    @settings(max_examples=60, deadline=None)
    @given(st.text())
    def check(text):
        reply = llm.chat([{"role": "user", "content": text}])
        stored = store.get_interaction(reply.interaction_id)
        assert stored.user_prompt == clean_text(text) == stored.response_content
        stored.user_prompt.encode("utf-8")

    try:
        check()
    finally:
        sink.forget_stores()
