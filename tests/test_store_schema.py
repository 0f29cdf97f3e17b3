"""The schema: versioned migrations, content-addressed prompts and tool schemas, Wilson's views."""

from __future__ import annotations

import sqlite3

import pytest
from sqlite_utils import Database

import wilson_core
from wilson_core.store import open_store, schema, sink
from wilson_core.store.migrating import migration_names

ALL = [m.name for m in schema.migrations.pending(Database(memory=True))]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    yield
    sink.forget_stores()


def applied(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson' ORDER BY rowid")]
    finally:
        conn.close()


def test_migrations_are_named_mNNN_verb_noun_in_order():
    assert ALL[0] == "m001_create_capture_tables"
    numbers = [int(name[1:4]) for name in ALL]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert all(name.startswith("m") and name.count("_") >= 2 for name in ALL)


def test_the_fast_up_to_date_check_knows_every_migration():
    assert list(migration_names()) == ALL


def test_a_blank_database_gets_every_migration(tmp_path):
    store = open_store(tmp_path / "blank.db")
    assert applied(tmp_path / "blank.db") == ALL
    tables = {r[0] for r in store.connection().execute("SELECT name FROM sqlite_master")}
    for name in ("blobs", "runs", "interactions", "tool_results", "annotations", "pairs",
                 "capture_counters", "llm_interactions", "llm_tool_results", "current_annotations"):
        assert name in tables
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    open_store(tmp_path / "blank.db")  # opening again changes nothing
    assert applied(tmp_path / "blank.db") == ALL


@pytest.mark.parametrize("latest", ALL[1:])
def test_a_database_from_the_previous_version_is_upgraded_keeping_its_data(tmp_path, latest):
    path = tmp_path / "old.db"
    old = Database(path)
    schema.migrations.apply(old, stop_before=latest)
    assert latest not in applied(path)
    # a call captured by the previous version (columns of m001)
    old.execute(
        "INSERT INTO runs (id, call_type, started_at) VALUES ('r1', 'agent', '2025-01-01T00:00:00+00:00')"
    )
    old.execute(
        "INSERT INTO interactions (id, run_id, sequence_num, call_type, model, provider, user_prompt,"
        " messages_json, response_content, status, created_at) VALUES ('i1', 'r1', 1, 'agent', 'm',"
        " 'scripted', 'hi', '[{\"role\":\"user\",\"content\":\"hi\"}]', 'hello', 'ok',"
        " '2025-01-01T00:00:00+00:00')"
    )
    old.conn.commit()
    old.close()
    store = open_store(path)
    assert applied(path)[-1] == ALL[-1] and set(applied(path)) == set(ALL)
    interaction = store.get_interaction("i1")
    assert interaction.response_content == "hello" and interaction.messages[0]["content"] == "hi"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["new"])
    reply = llm.chat([{"role": "user", "content": "after upgrade"}])
    assert store.get_interaction(reply.interaction_id).response_content == "new"
    assert store.get_run(reply.run_id).call_type == "agent"


SYSTEM = "You are Wilson, a careful finance assistant. " * 50  # about 2 KB
TOOLS = [{"type": "function", "function": {"name": f"tool_{n}", "description": "x" * 400}}
         for n in range(8)]


def test_system_prompts_and_tool_schemas_are_stored_once(tmp_path):
    path = tmp_path / "d.db"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["ok"], cycle=True)
    for n in range(50):
        llm.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"q{n}"}],
                 tools=TOOLS)
    store = open_store(path)
    conn = store.connection()
    kinds = dict(conn.execute("SELECT kind, count(*) FROM blobs GROUP BY kind").fetchall())
    assert kinds == {"system_prompt": 1, "tools": 1}
    assert conn.execute("SELECT count(*) FROM interactions WHERE messages_json LIKE '%careful finance%'"
                        ).fetchone()[0] == 0
    assert tuple(conn.execute("SELECT count(DISTINCT system_hash), count(DISTINCT tools_hash) FROM interactions"
                        ).fetchone()) == (1, 1)
    # Wilson's view shows them in full, and the read API gives them back
    row = conn.execute("SELECT system_prompt, tool_defs_json FROM llm_interactions LIMIT 1").fetchone()
    assert row[0] == SYSTEM and "tool_7" in row[1]
    [first] = store.iter_interactions(limit=1)
    assert first.messages[0] == {"role": "system", "content": SYSTEM}
    assert first.tools == tuple(TOOLS)


def test_the_blob_key_is_the_sha256_of_the_content(tmp_path):
    import hashlib

    path = tmp_path / "d.db"
    wilson_core.LLM("scripted:m", db=str(path)).chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    conn = open_store(path).connection()
    digest, content = conn.execute("SELECT hash, content FROM blobs WHERE kind = 'system_prompt'").fetchone()
    assert content == "Be brief." and digest == hashlib.sha256(b"Be brief.").hexdigest()


def test_the_same_context_has_the_same_context_hash(tmp_path):
    path = tmp_path / "d.db"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["a", "b", "c"])
    same = [{"role": "system", "content": "S"}, {"role": "user", "content": "same question"}]
    ids = [llm.chat(same).interaction_id, llm.chat(same).interaction_id,
           llm.chat(same[:1] + [{"role": "user", "content": "other"}]).interaction_id]
    conn = open_store(path).connection()
    hashes = [conn.execute("SELECT context_hash FROM interactions WHERE id = ?", (i,)).fetchone()[0]
              for i in ids]
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_system_message_with_extra_keys_stays_inline(tmp_path):
    path = tmp_path / "d.db"
    message = {"role": "system", "content": "S", "name": "policy"}
    reply = wilson_core.LLM("scripted:m", db=str(path)).chat([message, {"role": "user", "content": "u"}])
    store = open_store(path)
    assert store.get_interaction(reply.interaction_id).messages[0] == message
    assert store.count("blobs") == 0


def test_writing_the_same_interaction_twice_keeps_one_row(tmp_path):
    from wilson_core.records import Interaction

    store = open_store(tmp_path / "d.db")
    record = Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p", model="m",
                         messages=[{"role": "user", "content": "x"}])
    store.write_interaction(record)
    store.write_interaction(record)
    store.write_interactions([record, record])
    assert store.count() == 1 and store.count("runs") == 1
