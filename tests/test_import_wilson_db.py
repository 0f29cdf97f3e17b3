"""``wilson import wilson-db``: an Open Accountant Wilson data.db read as it is."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from wilson_fixtures import SYSTEM, TOOL_NAMES, build_wilson_db

from wilson_core.errors import RecordError
from wilson_core.importers.wilson_db import import_wilson_db
from wilson_core.store import open_store, sink


@pytest.fixture
def source(tmp_path):
    return build_wilson_db(tmp_path / "wilson-data.db")


@pytest.fixture
def store(tmp_path, monkeypatch, store_location):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    yield open_store(store_location)  # an SQLite file, then a PostgreSQL database
    sink.forget_stores()


def by_response(store):
    return {i.response_content: i for i in store.iter_interactions()}


def test_every_call_is_imported_with_its_run_tokens_and_status(source, store):
    report = import_wilson_db(store, source)
    assert report["added"] == {"runs": 4, "interactions": 5, "tool_results": 1,
                               "annotations": 3, "pairs": 1}
    rows = list(store.iter_interactions(order_by="i.created_at"))
    assert [r.call_type for r in rows] == ["agent", "agent", "summarize", "summarize", "categorize"]
    first, second = rows[0], rows[1]
    assert first.run_id == second.run_id and (first.sequence_num, second.sequence_num) == (1, 2)
    assert (second.input_tokens, second.output_tokens, second.total_tokens) == (190, 14, 204)
    assert second.duration_ms == 640 and second.created_at.startswith("2025-06-01T10:00:02")
    assert second.provider == "openai" and second.model == "gpt-4o-mini"
    failed = rows[4]
    assert failed.status == "error" and failed.error == "timeout after 5000 ms"
    assert {r.status for r in rows[:4]} == {"ok"}


def test_tool_names_become_minimal_schemas_and_tool_calls_keep_their_arguments(source, store):
    import_wilson_db(store, source)
    first = next(i for i in store.iter_interactions() if i.tool_calls)
    assert first.tools == tuple({"type": "function", "function": {"name": n}} for n in TOOL_NAMES)
    [call] = first.tool_calls
    assert (call.id, call.name, call.arguments) == (
        "call_1", "get_transactions", {"category": "groceries", "month": "2025-05"})


def test_tool_results_are_linked_and_later_steps_see_the_earlier_ones(source, store):
    import_wilson_db(store, source)
    first = next(i for i in store.iter_interactions() if i.tool_calls)
    [result] = store.tool_results(first.id)
    assert (result.tool_call_id, result.name) == ("call_1", "get_transactions")
    assert json.loads(result.content) == [{"amount": 212.5}, {"amount": 200.0}]
    second = by_response(store)["You spent 412.50 EUR on groceries in May."]
    roles = [m["role"] for m in second.messages]
    assert roles == ["system", "user", "assistant", "tool"]
    assert second.messages[0]["content"] == SYSTEM
    assert second.messages[2]["tool_calls"][0]["function"]["name"] == "get_transactions"
    assert second.messages[3]["tool_call_id"] == "call_1"


def test_standalone_and_run_less_calls_each_get_their_own_run(source, store):
    import_wilson_db(store, source)
    rows = by_response(store)
    standalone = [rows["Mostly rent and groceries."], rows["Numbers."]]
    assert standalone[0].run_id != standalone[1].run_id
    failed = next(i for i in store.iter_interactions() if i.status == "error")
    assert failed.run_id not in {s.run_id for s in standalone}
    assert store.get_run(failed.run_id).metadata["imported_from"] == "wilson-db"


def test_annotations_are_kept_as_import_labels_and_pairs(source, store):
    import_wilson_db(store, source)
    rows = by_response(store)
    conn = store.connection()
    labels = {r["interaction_id"]: r for r in conn.execute("SELECT * FROM current_annotations")}
    good = labels[rows["You spent 412.50 EUR on groceries in May."].id]
    assert (good["rating"], good["notes"], good["source"], good["annotator"]) == (
        5, "exact total", "import", "wilson-db")
    assert json.loads(good["tags_json"]) == ["correct", "concise"]
    chosen, rejected = rows["Mostly rent and groceries."], rows["Numbers."]
    assert labels[chosen.id]["preference"] == "chosen" and labels[rejected.id]["notes"] == "too vague"
    [pair] = conn.execute("SELECT * FROM pairs").fetchall()
    assert (pair["chosen_id"], pair["rejected_id"], pair["source"]) == (chosen.id, rejected.id, "import")
    assert labels[chosen.id]["pair_id"] == pair["id"] == labels[rejected.id]["pair_id"]


def test_importing_twice_adds_nothing(source, store):
    import_wilson_db(store, source)
    counts = {t: store.count(t) for t in ("interactions", "runs", "tool_results", "annotations", "blobs")}
    again = import_wilson_db(store, source)
    assert set(again["added"].values()) == {0}
    assert {t: store.count(t) for t in counts} == counts


def test_the_source_database_is_not_modified(source, store):
    before = source.read_bytes()
    import_wilson_db(store, source)
    assert source.read_bytes() == before


def test_a_broken_row_is_named_and_nothing_is_written(source, store):
    conn = sqlite3.connect(source)
    conn.execute("UPDATE llm_interactions SET tool_calls_json = '[{\"id\": \"x\", ' WHERE id = 's2'")
    conn.execute("UPDATE interaction_annotations SET tags = '[\"unclosed' WHERE id = 'a1'")
    conn.commit()
    conn.close()
    with pytest.raises(RecordError) as error:
        import_wilson_db(store, source)
    message = str(error.value)
    assert "llm_interactions id='s2'" in message and "interaction_annotations id='a1'" in message
    assert "nothing was written" in message
    assert store.count() == 0 and store.count("runs") == 0 and store.count("annotations") == 0


def test_a_pair_id_without_one_chosen_and_one_rejected_answer_is_not_a_pair(source, store):
    conn = sqlite3.connect(source)
    conn.execute("UPDATE interaction_annotations SET preference = 'chosen' WHERE id = 'a3'")
    conn.commit()
    conn.close()
    report = import_wilson_db(store, source)
    assert report["added"]["pairs"] == 0 and store.count("annotations") == 3
    assert report["skipped"] == {"pair ids without exactly one chosen and one rejected answer": 1}


def test_a_database_that_is_not_wilsons_is_refused_clearly(tmp_path, store):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (id INTEGER)").connection.commit()
    with pytest.raises(RecordError, match="not an Open Accountant Wilson database.*llm_interactions"):
        import_wilson_db(store, other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(RecordError, match="not an SQLite database"):
        import_wilson_db(store, junk)


def test_a_table_missing_a_column_is_refused_naming_it(tmp_path, store):
    path = tmp_path / "partial.db"
    sqlite3.connect(path).execute("CREATE TABLE llm_interactions (id TEXT, run_id TEXT)").connection.commit()
    with pytest.raises(RecordError, match="lacks the column.*sequence_num"):
        import_wilson_db(store, path)


def test_the_cli_imports_and_reports_as_json(source, tmp_path):
    ours = tmp_path / "cli.db"
    env = {**os.environ, "WILSON_DB": str(ours), "WILSON_SPOOL_DIR": str(tmp_path / "spool")}
    command = [sys.executable, "-m", "wilson_core.cli", "import", "wilson-db", str(source), "--json"]
    first = json.loads(subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout)
    second = json.loads(subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout)
    assert first["added"]["interactions"] == 5 and second["added"]["interactions"] == 0
    text = subprocess.run(command[:-1], capture_output=True, text=True, env=env, check=True).stdout
    assert "interactions: 0 new (5 already present)" in text


def test_integer_ids_and_epoch_millisecond_times_are_understood(tmp_path, store):
    from wilson_fixtures import WILSON_SCHEMA

    path = tmp_path / "integer-ids.db"
    conn = sqlite3.connect(path)
    conn.executescript(WILSON_SCHEMA.replace("id TEXT PRIMARY KEY", "id INTEGER PRIMARY KEY")
                       .replace("interaction_id TEXT", "interaction_id INTEGER"))
    conn.execute(
        "INSERT INTO llm_interactions (id, run_id, sequence_num, call_type, model, provider,"
        " user_prompt, response_content, tool_calls_json, status, created_at)"
        " VALUES (7, 'r', 1, 'agent', 'm', 'openai', 'hi', NULL, ?, 'success', 1748772000000)",
        (json.dumps([{"id": "c", "name": "f", "args": "{not json"}]),),
    )
    conn.execute("INSERT INTO llm_tool_results (id, interaction_id, tool_call_id, tool_name, tool_result,"
                 " created_at) VALUES (1, 7, 'c', 'f', 'done', 1748772000500)")
    conn.execute("INSERT INTO interaction_annotations (id, interaction_id, rating, annotated_at)"
                 " VALUES (1, 7, 3, '2025-06-01T10:00:00Z')")
    conn.commit()
    conn.close()
    report = import_wilson_db(store, path)
    assert report["added"]["interactions"] == 1 and report["added"]["tool_results"] == 1
    [row] = store.iter_interactions()
    assert row.created_at == "2025-06-01T10:00:00.000000+00:00"
    assert row.tool_calls[0].raw_arguments == "{not json"  # kept verbatim
    assert store.tool_results(row.id)[0].content == "done"
    assert store.connection().execute("SELECT rating FROM current_annotations").fetchone()[0] == 3
