"""Capture without the facade: ``wilson_core.run()``, ``record_call``, automatic tool results."""

from __future__ import annotations

import asyncio
import sqlite3
import types

import pytest

import wilson_core
from wilson_core import capture, plugins
from wilson_core.records import STATUS_INCOMPLETE, ToolCall
from wilson_core.store import open_store, sink

CALLS = [{"id": "call_a", "type": "function", "function": {"name": "balance", "arguments": '{"acct": "x"}'}},
         {"id": "call_b", "type": "function", "function": {"name": "rate", "arguments": "{}"}}]


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("WILSON_DB", raising=False)
    yield tmp_path / "data.db"
    sink.forget_stores()


def ask(text="hi"):
    return [{"role": "user", "content": text}]


def record(db, content="ok", messages=None, **parts):
    return wilson_core.record_call(provider="openai", model="gpt-x", messages=messages or ask(),
                                   content=content, db=str(db), **parts)


def test_calls_inside_a_run_share_it_and_are_numbered_in_order(db):
    with wilson_core.run(call_type="agent", metadata={"user": "u1"}) as r:
        assert wilson_core.current_run() is r
        made = [record(db, f"answer {n}") for n in range(3)]
    assert wilson_core.current_run() is None
    store = open_store(db)
    stored = store.run_interactions(r.id)
    assert [i.sequence_num for i in stored] == [1, 2, 3]
    assert [i.id for i in stored] == [m.id for m in made]
    assert [i.response_content for i in stored] == ["answer 0", "answer 1", "answer 2"]
    run = store.get_run(r.id)
    assert run.metadata == {"user": "u1"} and run.call_type == "agent" and run.ended_at is not None


def test_calls_outside_a_run_each_get_a_run_of_their_own(db):
    first, second = record(db), record(db)
    assert first.run_id != second.run_id and first.sequence_num == second.sequence_num == 1


def test_concurrent_asyncio_tasks_keep_their_own_runs(db):
    async def agent(name):
        async with wilson_core.run(metadata={"agent": name}) as r:
            for n in range(3):
                await asyncio.sleep(0)
                record(db, f"{name}{n}")
        return r.id

    async def main():
        return await asyncio.gather(agent("a"), agent("b"))

    a, b = asyncio.run(main())
    store = open_store(db)
    assert [i.response_content for i in store.run_interactions(a)] == ["a0", "a1", "a2"]
    assert [i.response_content for i in store.run_interactions(b)] == ["b0", "b1", "b2"]


def test_facade_calls_outside_llm_run_join_the_current_run(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["one", "two"])
    with wilson_core.run(call_type="agent") as r:
        record(db, "sdk call")
        reply = llm.chat(ask())
    assert reply.run_id == r.id
    assert [i.sequence_num for i in open_store(db).run_interactions(r.id)] == [1, 2]
    # and llm.run() is the context's current run: capture calls made in it join it
    with llm.run() as session:
        assert wilson_core.current_run() is session
        made = record(db)
    assert made.run_id == session.id


def test_tool_messages_answering_earlier_calls_become_tool_results_once(db):
    with wilson_core.run() as r:
        first = record(db, None, tool_calls=CALLS)
        history = ask() + [
            {"role": "assistant", "content": None, "tool_calls": CALLS},
            {"role": "tool", "tool_call_id": "call_a", "content": "10 EUR"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "3%"}]},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "ignored"},
        ]
        record(db, "You have 10 EUR at 3%.", messages=history)
        record(db, "again", messages=history + [{"role": "user", "content": "thanks"}])
    results = open_store(db).tool_results(first.id)
    assert sorted((t.tool_call_id, t.name, t.content, t.arguments) for t in results) == [
        ("call_a", "balance", "10 EUR", {"acct": "x"}),
        ("call_b", "rate", "3%", {}),
    ]
    assert all(t.interaction_id == first.id for t in results)
    assert r.record_tool_messages(history) == []  # already recorded: nothing new


def test_an_explicit_tool_result_is_not_recorded_again_from_the_next_request(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[{"content": None, "tool_calls": CALLS[:1]}, "done"])
    with llm.run() as run:
        reply = run.chat(ask())
        run.record_tool_result(reply.tool_calls[0], "explicit")
        run.chat(ask() + [reply.message, {"role": "tool", "tool_call_id": "call_a", "content": "from history"}])
    assert [t.content for t in open_store(db).tool_results(reply.interaction_id)] == ["explicit"]


def test_standalone_calls_link_the_results_of_their_tool_calls_too(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[{"content": None, "tool_calls": CALLS[:1]}, "done"])
    reply = llm.chat(ask())
    llm.chat(ask() + [reply.message, {"role": "tool", "tool_call_id": "call_a", "content": "42"}])
    [result] = open_store(db).tool_results(reply.interaction_id)
    assert result.content == "42" and result.name == "balance"


def test_a_run_named_by_an_id_is_found_again_and_the_oldest_are_dropped(db, monkeypatch):
    monkeypatch.setattr(capture, "KEYED_RUNS", 3)
    first = capture.run_for_id("req-1", call_type="chat", metadata={"team": "x"}, db=str(db))
    assert capture.run_for_id("req-1", db=str(db)) is first
    record(db, run=first)
    record(db, run=capture.run_for_id("req-1", db=str(db)))
    for n in range(2, 6):
        capture.run_for_id(f"req-{n}", db=str(db))
    assert capture.run_for_id("req-1", db=str(db)) is not first  # dropped: least recently used
    store = open_store(db)
    assert [i.sequence_num for i in store.run_interactions("req-1")] == [1, 2]
    assert store.get_run("req-1").metadata == {"team": "x"}


def test_ttft_and_incomplete_status_are_stored_and_read_back(db):
    call = capture.start_call(db=str(db))
    call.first_token()
    stored = call.finish(provider="ollama", model="m", messages=ask(), content="partial",
                         status=STATUS_INCOMPLETE, error="the app stopped reading")
    assert call.finish(provider="ollama", model="m", messages=ask()) is None  # once only
    back = open_store(db).get_interaction(stored.id)
    assert back.status == STATUS_INCOMPLETE and back.response_content == "partial"
    assert back.ttft_ms == stored.ttft_ms and 0 <= back.ttft_ms <= back.duration_ms
    plain = record(db)
    assert open_store(db).get_interaction(plain.id).ttft_ms is None
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT ttft_ms FROM interactions WHERE id = ?", (stored.id,)).fetchone()[0] > 0


def test_bad_parts_and_failing_sinks_never_reach_the_app(db, caplog):
    before = capture.capture_failures()
    assert record(db, status="bogus") is None
    assert record(db, tool_calls=[{"no": "name"}]) is None
    assert capture.capture_failures() == before + 2

    broken = types.SimpleNamespace()

    @wilson_core.hookimpl
    def wilson_capture_interaction(interaction):
        raise RuntimeError("sink exploded")

    broken.wilson_capture_interaction = wilson_capture_interaction
    pm = plugins.plugin_manager()
    pm.register(broken, name="broken-sink")
    try:
        with caplog.at_level("WARNING", logger="wilson"):
            made = record(db, "still stored")
    finally:
        pm.unregister(name="broken-sink")
    assert "sink exploded" in caplog.text
    assert capture.capture_failures() == before + 3
    assert open_store(db).get_interaction(made.id).response_content == "still stored"


def test_tool_calls_may_be_records_or_openai_dicts(db):
    made = record(db, None, tool_calls=[ToolCall(id="c1", name="f", arguments={"x": 1}), CALLS[1]])
    back = open_store(db).get_interaction(made.id)
    assert [(c.id, c.name, c.arguments) for c in back.tool_calls] == [("c1", "f", {"x": 1}), ("call_b", "rate", {})]


def test_a_result_recorded_for_a_foreign_call_does_not_hide_a_waiting_one(db):
    with wilson_core.run() as r:
        r.record_tool_result(ToolCall(id="elsewhere", name="x"), "explicit, for a call of another run", db=str(db))
        first = record(db, None, tool_calls=CALLS[:1])
        record(db, "done", messages=ask() + [{"role": "assistant", "content": None, "tool_calls": CALLS[:1]},
                                             {"role": "tool", "tool_call_id": "call_a", "content": "10"}])
    assert [t.content for t in open_store(db).tool_results(first.id)] == ["10"]


def test_an_explicit_result_goes_to_the_database_of_the_call_that_asked(db, tmp_path):
    other = tmp_path / "other.db"
    with wilson_core.run() as r:
        first = record(other, None, tool_calls=CALLS[:1])
        r.record_tool_result("call_a", "42")  # no db given: the one call_a was recorded in
    assert [t.content for t in open_store(other).tool_results(first.id)] == ["42"]
    assert open_store(other).get_run(r.id).ended_at is not None and not db.exists()


def test_a_long_run_remembers_a_bounded_number_of_tool_calls(db, monkeypatch):
    monkeypatch.setattr(capture.runs, "RUN_CALLS", 3)  # (the module that uses it)
    with wilson_core.run() as r:
        made = [record(db, None, tool_calls=[{"id": f"c{n}", "function": {"name": "f", "arguments": "{}"}}])
                for n in range(5)]
        record(db, "done", messages=ask() + [{"role": "tool", "tool_call_id": f"c{n}", "content": str(n)}
                                             for n in range(5)])
    assert len(r._calls) == 3 and r._waiting == 0
    store = open_store(db)
    assert [len(store.tool_results(m.id)) for m in made] == [0, 0, 1, 1, 1]  # the two oldest were forgotten
