"""``wilson logs`` (filters, newest first, JSON), short ids everywhere, and the CLI conventions
(``python -m wilson_core``, ``--db`` after the command, ``-v`` / ``-q``, a calm ``wilson stats``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wilson_core
from wilson_core.errors import NotFound
from wilson_core.records import Interaction
from wilson_core.store import open_store, sink
from wilson_core.store.listing import (
    AmbiguousId,
    LogFilter,
    list_interactions,
    parse_when,
    resolve_id,
)


def wilson(*args, module="wilson_core", env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "WILSON_DB"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=120)


def _interaction(**kwargs):
    base = dict(run_id="run-a", sequence_num=1, call_type="agent", provider="p", model="m",
                messages=[{"role": "user", "content": "hello"}], response_content="hi")
    return Interaction(**{**base, **kwargs})


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    path = tmp_path / "data.db"
    store = open_store(path)
    # created_at in different zones: 10:00+02:00 is 08:00Z, earlier than 09:00Z although it sorts later as text
    rows = [
        _interaction(id="abcdef11" + "0" * 24, created_at="2026-01-02T10:00:00+02:00",
                     messages=[{"role": "user", "content": "groceries at Lidl"}], response_content="groceries"),
        _interaction(id="abcdef22" + "0" * 24, created_at="2026-01-02T09:00:00+00:00", sequence_num=2,
                     model="big", messages=[{"role": "user", "content": "rent for January"}],
                     response_content="housing"),
        _interaction(id="bbbb3333" + "0" * 24, run_id="run-b", created_at="2026-01-03T12:00:00Z",
                     call_type="summarize", provider="q", status="error", error="quota",
                     response_content=None),
    ]
    for row in rows:
        store.write_interaction(row)
    from wilson_core import annotations

    annotations.annotate(store, rows[0].id, rating=5, add_tags=["good", "food"])
    annotations.annotate(store, rows[1].id, rating=2)
    store.close()
    sink.forget_stores()
    return SimpleNamespace(path=path, ids=[r.id for r in rows])


def test_logs_lists_newest_first_by_real_time_with_short_ids(db):
    out = wilson("logs", "--db", db.path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    body = [line for line in lines[2:] if line.strip()]
    assert [line.split()[0] for line in body] == ["bbbb3333", "abcdef22", "abcdef11"]
    assert "0" * 24 not in out.stdout  # short ids in the table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "1"], [2]),
        (["-m", "big"], [1]),
        (["-t", "summarize"], [2]),
        (["-p", "q"], [2]),
        (["--status", "error"], [2]),
        (["--rating-min", "3"], [0]),
        (["--rating-max", "3"], [1]),
        (["--unrated"], [2]),
        (["--tag", "food"], [0]),
        (["--tag", "food", "--tag", "nope"], []),
        (["-r", "run-b"], [2]),
        (["--since", "2026-01-02T08:30:00Z"], [2, 1]),
        (["--until", "2026-01-02T08:30:00Z"], [0]),
        (["--since", "2026-01-02T09:30:00+01:00", "--until", "2026-01-02T12:00Z"], [1]),
        (["-q", "lidl"], [0]),
        (["-q", "hous*"], [1]),
    ],
)
def test_logs_filters(db, args, expected):
    out = wilson("logs", *args, "--json", env={"WILSON_DB": str(db.path)})
    assert out.returncode == 0, out.stderr
    assert [row["id"] for row in json.loads(out.stdout)] == [db.ids[i] for i in expected]


def test_logs_json_has_the_label_and_tool_calls(db):
    out = wilson("--db", db.path, "logs", "--json", "-n", "0")
    row = {r["id"]: r for r in json.loads(out.stdout)}[db.ids[0]]
    assert row["rating"] == 5 and sorted(row["tags"]) == ["food", "good"]
    assert row["short_id"] == db.ids[0][:8] and row["user_prompt"] == "groceries at Lidl"


def test_bad_input_to_logs_is_a_clear_error(db):
    for args, message in [(["--since", "yesterday-ish"], "not a date or time"),
                          (["--unrated", "--rating-min", "2"], "cannot be combined"),
                          (["-r", "zzzzzzzz"], "no id starts with")]:
        out = wilson("--db", db.path, "logs", *args)
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr


def test_short_ids_resolve_and_ambiguity_lists_candidates(db):
    store = open_store(db.path)
    assert resolve_id(store, "abcdef1") == db.ids[0]
    assert resolve_id(store, db.ids[1]) == db.ids[1]
    assert resolve_id(store, "run-b", "run") == "run-b"
    assert resolve_id(store, "bbbb33", ("interaction", "run")) == db.ids[2]
    with pytest.raises(AmbiguousId) as caught:
        resolve_id(store, "abcdef")
    assert db.ids[0] in str(caught.value) and db.ids[1] in str(caught.value)
    with pytest.raises(NotFound, match="at least 6"):
        resolve_id(store, "abcde")
    with pytest.raises(NotFound, match="no interaction with id .ffffff"):
        resolve_id(store, "ffffff")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=0, max_size=12))
def test_any_text_resolves_to_one_id_or_a_clear_error(db, text):
    store = open_store(db.path)
    try:
        found = resolve_id(store, text, ("interaction", "run"))
    except (NotFound, AmbiguousId):
        return
    assert found in db.ids + ["run-a", "run-b"] and found.startswith(text.strip())


def test_every_command_taking_an_id_takes_a_short_one(db):
    env = {"WILSON_DB": str(db.path)}
    assert wilson("show", "bbbb33", "--json", env=env).returncode == 0
    shown = json.loads(wilson("show", "bbbb33", "--json", env=env).stdout)
    assert shown["id"] == db.ids[2]
    rated = wilson("annotate", "rate", "bbbb3333", "4", "--json", env=env)
    assert rated.returncode == 0, rated.stderr
    assert json.loads(rated.stdout)["interaction_id"] == db.ids[2]
    tagged = wilson("annotate", "tag", "abcdef2", "x", "--json", env=env)
    assert json.loads(tagged.stdout)["interaction_id"] == db.ids[1]
    history = wilson("annotate", "history", "abcdef11", "--json", env=env)
    assert history.returncode == 0, history.stderr
    ambiguous = wilson("annotate", "rate", "abcdef", "3", env=env)
    assert ambiguous.returncode == 1 and "several ids" in ambiguous.stderr
    assert db.ids[0] in ambiguous.stderr and "Traceback" not in ambiguous.stderr
    run = json.loads(wilson("show", "run-a", "--json", env=env).stdout)
    assert [r["id"] for r in run] == [db.ids[0], db.ids[1]]


def test_parse_when_reads_dates_times_zones_and_ages():
    now = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
    assert parse_when("2h", now=now) == datetime(2026, 1, 10, 10, 0, tzinfo=timezone.utc)
    assert parse_when("7d", now=now) == datetime(2026, 1, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_when("2026-01-02T10:00:00+02:00") == datetime(2026, 1, 2, 8, 0, tzinfo=timezone.utc)
    assert parse_when("2026-01-02T08:00Z") == datetime(2026, 1, 2, 8, 0, tzinfo=timezone.utc)
    assert parse_when("2026-01-02").tzinfo is not None


def test_list_interactions_as_a_library_call(db):
    store = open_store(db.path)
    rows = list_interactions(store, LogFilter(call_types="agent", limit=None))
    assert [r["id"] for r in rows] == [db.ids[1], db.ids[0]]


# -- CLI conventions ---------------------------------------------------------


def test_python_dash_m_wilson_core_is_the_wilson_command(db):
    out = wilson("--db", db.path, "runs", "--json")
    assert out.returncode == 0, out.stderr
    assert {r["id"] for r in json.loads(out.stdout)} == {"run-a", "run-b"}


def test_db_is_accepted_after_the_command_at_every_level(db, tmp_path):
    other = tmp_path / "other.db"
    open_store(other).close()
    env = {"WILSON_DB": str(other)}
    assert len(json.loads(wilson("runs", "--db", db.path, "--json", env=env).stdout)) == 2
    assert len(json.loads(wilson("runs", "--json", env=env).stdout)) == 0
    listed = wilson("annotate", "history", "abcdef11", "--db", db.path, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "--db" in wilson("export", "sft", "--help").stdout


def test_stats_says_capture_is_ok_when_nothing_is_wrong(db):
    out = wilson("--db", db.path, "stats")
    assert "capture: ok" in out.stdout and "unavailable" not in out.stdout


def test_library_messages_go_through_logging_and_q_silences_them(tmp_path):
    # a spool line that cannot be read is reported through logging.getLogger("wilson")
    path = tmp_path / "d.db"
    open_store(path).close()
    sink.forget_stores()
    (tmp_path / "d.db.spool.jsonl").write_text('{"kind": "interaction", "record": {"id": "torn')
    env = {"WILSON_SPOOL_DIR": str(tmp_path)}
    loud = wilson("--db", path, "runs", env=env)
    assert "WARNING: 1 spooled line(s) could not be read" in loud.stderr, loud.stderr
    (tmp_path / "d.db.spool.jsonl").write_text('{"kind": "interaction", "record": {"id": "torn')
    quiet = wilson("-q", "--db", path, "runs", env=env)
    assert quiet.returncode == 0 and "spooled" not in quiet.stderr
    assert "-v, --verbose" in wilson("--help").stdout
    assert "_WILSON_COMPLETE" in wilson("--help").stdout


def test_llm_capture_warning_is_a_log_record(tmp_path, caplog):
    llm = wilson_core.LLM("scripted:m", db=str(tmp_path / "x.db"), script=["ok"])
    with caplog.at_level("INFO", logger="wilson"):
        llm.chat([{"role": "user", "content": "hi"}])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_runs_table_shows_short_ids_that_work_in_show(db):
    out = wilson("--db", db.path, "runs")
    shown = [line.split()[0] for line in out.stdout.splitlines()[2:]]
    assert sorted(shown) == ["run-a", "run-b"]  # short enough already: shown whole
    store = open_store(db.path)
    from wilson_core.store.listing import short_ids

    assert short_ids(store, [db.ids[0]])[db.ids[0]] == "abcdef11"
