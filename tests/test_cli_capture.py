"""The command line: a light start, runs/show/stats (also as JSON), clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import wilson_core
from wilson_core.store import sink

HEAVY = ("torch", "transformers", "numpy", "pandas", "trl", "peft", "gguf", "onnx", "datasets",
         "openai", "anthropic", "litellm", "psycopg", "starlette", "uvloop", "llguidance")


def wilson(*args, db=None, env=None):
    full_env = {**os.environ, **(env or {})}
    if db is not None:
        full_env["WILSON_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", *map(str, args)],
        capture_output=True, text=True, env=full_env, timeout=120,
    )


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    path = tmp_path / "data.db"
    llm = wilson_core.LLM(
        "scripted:m", db=str(path),
        script=[{"content": None, "tool_calls": [{"id": "c1", "name": "lookup", "args": {"q": 1}}]},
                "found it", {"error": "quota exceeded"}, "summary"],
    )
    with llm.run(call_type="agent") as run:
        first = run.chat([{"role": "user", "content": "find q"}])
        run.record_tool_result(first.tool_calls[0], "q=1")
        run.chat([{"role": "user", "content": "find q"}, first.message])
        with pytest.raises(Exception, match="quota"):
            run.chat([{"role": "user", "content": "again"}])
    llm.chat([{"role": "user", "content": "summarize"}], call_type="summarize")
    sink.forget_stores()
    return SimpleNamespace(path=path, run_id=run.id, first_id=first.interaction_id)


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\nfrom wilson_core.cli import main\n"
        "code = main(['--help'])\n"
        f"print(code, [m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"


def test_help_lists_the_commands():
    """How fast ``--help`` answers is measured by ``bench/bench_cli.py`` (a ratio against a bare
    interpreter in the same run), never by a timed test: here, only what it says."""
    out = wilson("--help")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    for command in ("runs", "show", "stats", "import", "plugins"):
        assert command in out.stdout


def test_runs_json_lists_calls_errors_and_tokens(db):
    out = wilson("runs", "--json", db=db.path)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    agent = next(r for r in runs if r["id"] == db.run_id)
    assert (agent["calls"], agent["errors"], agent["call_type"]) == (3, 1, "agent")
    assert len(runs) == 2


def test_show_json_gives_the_interaction_with_its_tool_results(db):
    data = json.loads(wilson("show", db.first_id, "--json", db=db.path).stdout)
    assert data["id"] == db.first_id
    assert data["tool_calls"][0]["name"] == "lookup"
    assert data["tool_results"][0]["content"] == "q=1"


def test_show_a_run_id_gives_every_call_in_order(db):
    data = json.loads(wilson("show", db.run_id, "--json", db=db.path).stdout)
    assert [d["sequence_num"] for d in data] == [1, 2, 3]
    assert data[2]["status"] == "error" and "quota" in data[2]["error"]
    text = wilson("show", db.run_id, db=db.path).stdout
    assert "tool call c1: lookup" in text and "error: ProviderError: quota exceeded" in text


def test_stats_json_counts_by_call_type_model_and_status(db):
    data = json.loads(wilson("stats", "--json", db=db.path).stdout)
    assert data["interactions"] == 4
    assert data["by_call_type"] == {"agent": 3, "summarize": 1}
    assert data["by_status"] == {"ok": 3, "error": 1}
    assert data["by_model"] == {"m": 4}
    assert data["tool_results"] == 1
    assert data["latency_ms"]["p50"] is not None
    assert data["capture"] == {"spooled": 0, "replayed": 0, "spooled_pending": 0,
                               "spool_unreadable": 0, "sink_failures": 0,
                               "quarantined": 0, "dropped": 0}
    assert "interactions 4" in wilson("stats", db=db.path).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "no-such-id"], "no interaction or run with id 'no-such-id'"),
        (["import", "openai-jsonl", "missing.jsonl"], "no such file"),
        (["import", "wilson-db", "missing.db"], "no such file"),
        (["runs", "--limit", "many"], "'many' is not a valid integer"),
    ],
)
def test_bad_input_exits_non_zero_with_an_error_and_no_traceback(db, args, message):
    out = wilson(*args, db=db.path)
    assert out.returncode != 0
    assert "Error" in out.stderr and message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_corrupt_database_is_a_clear_error_and_is_left_untouched(tmp_path):
    corrupt = tmp_path / "data.db"
    corrupt.write_bytes(b"this is not sqlite at all" * 100)
    before = corrupt.read_bytes()
    out = wilson("stats", db=corrupt)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "is not a usable Wilson database" in out.stderr and "left untouched" in out.stderr
    assert corrupt.read_bytes() == before


def test_reading_commands_do_not_create_a_database(tmp_path):
    missing = tmp_path / "nowhere.db"
    out = wilson("stats", db=missing)
    assert out.returncode == 1 and "no Wilson database" in out.stderr
    assert not missing.exists()


def test_the_capture_path_imports_nothing_new_on_each_call(tmp_path):
    wilson_core.open_store(tmp_path / "d.db").close()  # an existing, up-to-date database
    code = f"""
import sys, wilson_core
llm = wilson_core.LLM("scripted:m", db={str(tmp_path / 'd.db')!r}, script=["ok"], cycle=True)
with llm.run() as run:
    run.chat([{{"role": "user", "content": "first"}}])
before = set(sys.modules)
for n in range(50):
    llm.chat([{{"role": "system", "content": "S"}}, {{"role": "user", "content": str(n)}}],
             tools=[{{"type": "function", "function": {{"name": "t"}}}}])
print(sorted(set(sys.modules) - before))
print([m for m in {HEAVY!r} + ("sqlite_utils", "cattrs.preconf") if m in sys.modules])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout


def test_show_json_of_a_one_call_run_is_still_a_list(db):
    runs = json.loads(wilson("runs", "--json", db=db.path).stdout)
    single = next(r for r in runs if r["calls"] == 1)
    data = json.loads(wilson("show", single["id"], "--json", db=db.path).stdout)
    assert isinstance(data, list) and data[0]["call_type"] == "summarize"
