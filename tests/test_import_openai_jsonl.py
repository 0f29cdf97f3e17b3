"""``wilson import openai-jsonl``: OpenAI chat-format JSONL, one conversation per line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wilson_core.errors import RecordError
from wilson_core.importers.openai_jsonl import import_openai_jsonl
from wilson_core.store import open_store, sink

TOOLS = [{"type": "function", "function": {
    "name": "get_balance", "description": "Balance of an account",
    "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}}]

SIMPLE = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Summarize: rent 900, food 400."},
    {"role": "assistant", "content": "Mostly rent."},
]}
TOOL_CONVERSATION = {"model": "gpt-4o", "tools": TOOLS, "messages": [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Balance of checking?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_balance", "arguments": "{\"account\": \"checking\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "120 EUR"},
    {"role": "assistant", "content": "You have 120 EUR."},
]}


def write_lines(path, *lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
                             for line in lines))
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, store_location):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    yield open_store(store_location)  # an SQLite file, then a PostgreSQL database
    sink.forget_stores()


def test_a_conversation_becomes_a_run_whose_last_answer_is_the_response(tmp_path, store):
    report = import_openai_jsonl(store, write_lines(tmp_path / "a.jsonl", SIMPLE), model="gpt-x")
    assert report["added"]["interactions"] == 1 and report["added"]["runs"] == 1
    [row] = store.iter_interactions()
    assert row.response_content == "Mostly rent."
    assert [m["role"] for m in row.messages] == ["system", "user"]
    assert (row.model, row.provider, row.call_type, row.sequence_num) == ("gpt-x", "import", "agent", 1)
    assert row.system_prompt == "Be brief."


def test_a_tool_conversation_is_one_run_with_one_interaction_per_assistant_turn(tmp_path, store):
    import_openai_jsonl(store, write_lines(tmp_path / "a.jsonl", TOOL_CONVERSATION))
    [run] = store.iter_runs()
    first, second = store.run_interactions(run.id)
    assert (first.sequence_num, second.sequence_num) == (1, 2)
    assert first.tool_calls[0].arguments == {"account": "checking"}
    assert first.tools == tuple(TOOLS) and first.model == "gpt-4o"
    assert second.response_content == "You have 120 EUR."
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.messages[2]["tool_calls"][0]["function"]["arguments"] == {"account": "checking"}
    [result] = store.tool_results(first.id)
    assert (result.tool_call_id, result.name, result.content) == ("call_1", "get_balance", "120 EUR")
    assert result.arguments == {"account": "checking"}


def test_importing_twice_adds_nothing(tmp_path, store):
    path = write_lines(tmp_path / "a.jsonl", SIMPLE, TOOL_CONVERSATION)
    import_openai_jsonl(store, path)
    again = import_openai_jsonl(store, path)
    assert set(again["added"].values()) == {0}
    assert store.count() == 3 and store.count("runs") == 2 and store.count("tool_results") == 1


def test_malformed_tool_arguments_in_a_line_are_kept_raw(tmp_path, store):
    line = json.loads(json.dumps(TOOL_CONVERSATION))
    line["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{\"account\": "
    import_openai_jsonl(store, write_lines(tmp_path / "a.jsonl", line))
    first = next(i for i in store.iter_interactions() if i.tool_calls)
    assert first.tool_calls[0].raw_arguments == "{\"account\": " and first.tool_calls[0].arguments == {}


def test_a_broken_line_is_named_and_nothing_is_written(tmp_path, store):
    path = write_lines(tmp_path / "a.jsonl", SIMPLE, TOOL_CONVERSATION, b'{"messages": [', SIMPLE)
    with pytest.raises(RecordError, match=r"line 3: not valid JSON") as error:
        import_openai_jsonl(store, path)
    assert "nothing was written" in str(error.value)
    assert store.count() == 0 and store.count("runs") == 0


def test_every_bad_line_is_listed_with_its_number(tmp_path, store):
    path = write_lines(
        tmp_path / "a.jsonl",
        SIMPLE,
        b"\xff\xfe not utf-8",
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": [{"role": "wizard", "content": "?"}, {"role": "assistant", "content": "x"}]},
        ["not", "an", "object"],
    )
    with pytest.raises(RecordError) as error:
        import_openai_jsonl(store, path)
    message = str(error.value)
    assert "4 problem(s)" in message
    assert "line 2: not valid JSON" in message  # the bytes decoded (U+FFFD), then not JSON
    assert "line 3: no assistant message" in message
    assert "line 4: messages[0] has role 'wizard'" in message
    assert "line 5: a line must be a JSON object" in message
    assert store.count() == 0


def test_blank_lines_are_ignored(tmp_path, store):
    path = tmp_path / "a.jsonl"
    path.write_text("\n" + json.dumps(SIMPLE) + "\n\n")
    assert import_openai_jsonl(store, path)["added"]["interactions"] == 1


def test_the_cli_names_the_broken_line_without_a_traceback(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", SIMPLE, b"{oops")
    env = {**os.environ, "WILSON_DB": str(tmp_path / "cli.db"), "WILSON_SPOOL_DIR": str(tmp_path / "s")}
    out = subprocess.run([sys.executable, "-m", "wilson_core.cli", "import", "openai-jsonl", str(path)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "Error: cannot import" in out.stderr and "line 2: not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "cli.db").exists()  # checked before the database was even opened
