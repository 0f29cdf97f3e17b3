"""``wilson import llm-logs``: simonw/llm's logs.db, written by the real ``llm`` package.

The newer schema (turns and the content-addressed message store) is written in the
test by the installed ``llm`` with the ``llm-echo`` model plugin, tool calls included.
The legacy ``responses`` schema is ``tests/data/llm-logs-0.26.db``, written by llm 0.26
with llm-echo 0.3 (``tests/data/make_llm_logs.sh`` rebuilds it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from wilson_core.cli import main
from wilson_core.errors import RecordError
from wilson_core.importers.llm_logs import read
from wilson_core.store import open_store

DATA = Path(__file__).resolve().parent / "data"
LEGACY = DATA / "llm-logs-0.26.db"
ADD = "def add(a: int, b: int) -> int:\n    return a + b\n"
TOOL_PROMPT = json.dumps({"prompt": "add them", "tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]})


def llm(home: Path, *args: str) -> str:
    env = {**os.environ, "LLM_USER_PATH": str(home), "LLM_LOAD_PLUGINS": "llm-echo"}
    done = subprocess.run([sys.executable, "-m", "llm", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def new_logs(tmp_path_factory) -> Path:
    pytest.importorskip("llm")
    pytest.importorskip("llm_echo")
    home = tmp_path_factory.mktemp("llm-home")
    llm(home, "-m", "echo", "-s", "You are terse.", "hello there")
    llm(home, "-m", "echo", "--functions", ADD, TOOL_PROMPT)
    llm(home, "-m", "echo", "-c", "follow up")
    path = home / "logs.db"
    assert "turns" in {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    return path


def run_import(db: Path, logs: Path, capsys) -> dict:
    assert main(["--db", str(db), "import", "llm-logs", str(logs), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_import(db: Path, logs: Path, capsys, *, calls: int, runs: int, tokens: bool = True) -> None:
    first = run_import(db, logs, capsys)
    assert first["added"]["interactions"] == calls and first["added"]["runs"] == runs
    assert first["added"]["tool_results"] == 1
    again = run_import(db, logs, capsys)  # idempotent
    assert again["added"] == {k: 0 for k in again["added"]}

    store = open_store(db)
    interactions = list(store.iter_interactions())
    assert {i.provider for i in interactions} == {"llm"} and {i.model for i in interactions} == {"echo"}
    hello = next(i for i in interactions if i.messages[-1].get("content") == "hello there")
    assert hello.messages[0] == {"role": "system", "content": "You are terse."}
    assert '"prompt": "hello there"' in hello.response_content
    if tokens:  # llm-echo 0.3 (under llm 0.26) reports no usage
        assert hello.input_tokens and hello.output_tokens and hello.total_tokens
    assert hello.duration_ms >= 0
    assert hello.created_at.startswith("20")

    asked = next(i for i in interactions if i.tool_calls)
    [call] = asked.tool_calls
    assert call.name == "add" and dict(call.arguments) == {"a": 1, "b": 2}
    assert [t["function"]["name"] for t in asked.tools] == ["add"]
    assert asked.tools[0]["function"]["parameters"]["properties"]["a"]["type"] == "integer"
    [result] = store.tool_results(asked.id)
    assert result.name == "add" and result.content == "3" and result.tool_call_id == call.id

    # the call that received the tool result: same run, the result in its context
    answered = next(i for i in interactions if i.run_id == asked.run_id and i.sequence_num == asked.sequence_num + 1)
    roles = [m["role"] for m in answered.messages]
    assert roles[-2:] == ["assistant", "tool"] and answered.messages[-1]["content"] == "3"
    assert answered.messages[-2]["tool_calls"][0]["function"]["name"] == "add"
    followed = [i for i in interactions if i.messages[-1].get("content") == "follow up"]
    assert len(followed) == 1 and followed[0].run_id == asked.run_id  # `llm -c` continues the conversation


def test_the_newer_message_store_schema_is_imported(new_logs, tmp_path, capsys):
    check_import(tmp_path / "w.db", new_logs, capsys, calls=4, runs=2)


def test_the_legacy_responses_schema_is_imported(tmp_path, capsys):
    tables = {r[0] for r in sqlite3.connect(LEGACY).execute("SELECT name FROM sqlite_master")}
    assert "responses" in tables and "turns" not in tables
    check_import(tmp_path / "w.db", LEGACY, capsys, calls=4, runs=2, tokens=False)


def test_a_legacy_database_upgraded_by_a_newer_llm_keeps_its_old_rows(new_logs, tmp_path, capsys):
    pytest.importorskip("llm")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(LEGACY, home / "logs.db")
    llm(home, "-m", "echo", "a newer call")  # migrates the file, then logs into turns
    batch = read(home / "logs.db")
    assert len(batch.interactions) == 5
    assert any(i.messages[-1].get("content") == "a newer call" for i in batch.interactions)


def test_importing_leaves_the_llm_database_untouched(new_logs, tmp_path, capsys):
    before = new_logs.read_bytes()
    run_import(tmp_path / "w.db", new_logs, capsys)
    assert new_logs.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all", b""])
def test_bad_files_are_clear_errors_and_write_nothing(tmp_path, capsys, content):
    bad = tmp_path / "logs.db"
    bad.write_bytes(content)
    assert main(["--db", str(tmp_path / "w.db"), "import", "llm-logs", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "cannot import" in err and "Traceback" not in err
    assert not (tmp_path / "w.db").exists()


def test_another_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE things (x)")
    with pytest.raises(RecordError, match="not an llm logs.db"):
        read(other)
    with pytest.raises(RecordError, match="no such file"):
        read(tmp_path / "missing.db")


def test_fragments_are_put_back_into_the_prompt_and_system_prompt(tmp_path):
    pytest.importorskip("llm")
    pytest.importorskip("llm_echo")
    home = tmp_path / "home"
    home.mkdir()
    fragment = tmp_path / "statement.txt"
    fragment.write_text("Groceries at Lidl, 12.40 EUR.")
    llm(home, "-m", "echo", "-f", str(fragment), "Summarise the statement")
    llm(home, "-m", "echo", "--sf", str(fragment), "with a system fragment")
    first, second = read(home / "logs.db").interactions
    prompt = first.messages[-1]["content"]  # llm sends the fragment, then the typed prompt
    assert prompt.startswith("Groceries at Lidl, 12.40 EUR.") and prompt.endswith("Summarise the statement")
    assert second.messages[0] == {"role": "system", "content": "Groceries at Lidl, 12.40 EUR."}
