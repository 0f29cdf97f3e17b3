"""The export command: flags, pyproject defaults, exit codes, bad input, interruption, plugins."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_export import export, lines

from wilson_core.cli import main
from wilson_core.exporting import ExportOptions, run_export
from wilson_core.records import Interaction, ToolCall

samples = pytest.importorskip("wilson_exporters.samples")


# -- the command line and bad input ------------------------------------------------


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exports_with_filters_and_prints_where_it_wrote(sample, tmp_path, capsys):
    store, _ = sample
    out = tmp_path / "cli.jsonl"
    code, stdout, _ = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", str(out),
                              "--min-rating", "5", "--call-type", "agent", "-q")
    assert code == 0 and f"Wrote 2 lines to {out}" in stdout
    assert len(lines(out)) == 2


def test_cli_count_prints_the_number_of_lines(sample, capsys):
    store, _ = sample
    code, stdout, _ = run_cli(capsys, "--db", str(store.path), "export", "kto", "--count")
    assert code == 0 and stdout.strip() == "6"


def test_unknown_format_lists_the_available_ones(sample, tmp_path, capsys):
    store, _ = sample
    code, _, err = run_cli(capsys, "--db", str(store.path), "export", "parquet", "--out", str(tmp_path / "x"))
    assert code == 1
    assert "unknown name 'parquet'" in err and "dpo, kto, openai-chat, sft" in err
    assert not (tmp_path / "x").exists()


def test_filters_matching_nothing_write_an_empty_file_and_exit_3(sample, tmp_path, capsys):
    store, _ = sample
    out = tmp_path / "empty.jsonl"
    code, _, err = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", str(out),
                           "--model", "no-such-model", "-q")
    assert code == 3 and "no examples matched" in err
    assert out.read_text() == ""
    manifest = json.loads((tmp_path / "empty.jsonl.manifest.json").read_text())
    assert manifest["counts"]["total"] == 0 and manifest["interaction_ids"] == {"train": []}


@pytest.mark.parametrize("where", ["file-as-folder", "directory"])
def test_an_unwritable_output_path_is_a_clear_error(sample, tmp_path, capsys, where):
    store, _ = sample
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    target = blocker / "out.jsonl" if where == "file-as-folder" else tmp_path
    code, _, err = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", str(target), "-q")
    assert code == 1 and "Error: cannot write" in err and "Traceback" not in err


class Interrupting:
    """A redaction rule that simulates Ctrl-C in the middle of an export."""

    name = "STOP"

    def __init__(self, after: int) -> None:
        self.calls = 0
        self.after = after

    def find(self, text):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return []


def test_an_interrupted_export_leaves_the_previous_file_whole_and_no_partial_file(sample, tmp_path):
    from wilson_core import hookimpl
    from wilson_core.plugins import plugin_manager

    store, _ = sample
    out = tmp_path / "train.jsonl"
    run_export(store, ExportOptions(format="sft"), out)
    before = out.read_bytes()

    class Plugin:
        @hookimpl
        def wilson_redaction_rules(self):
            return [Interrupting(after=20)]

    pm = plugin_manager()
    pm.register(Plugin(), name="interrupting")
    try:
        with pytest.raises(KeyboardInterrupt):
            run_export(store, ExportOptions(format="sft", min_rating=1, redact=True), out)
    finally:
        pm.unregister(name="interrupting")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "train" in p.name) == [
        "train.jsonl", "train.jsonl.manifest.json"]


#: ``wilson`` whose redaction slows down after its 100th example, and says so by creating a file:
#: the export is then surely still running when the test interrupts it, however fast the machine.
_SLOW_EXPORT = """
import pathlib, sys, time
from wilson_core.exporting import redaction
marker = pathlib.Path(sys.argv.pop(1))
original = redaction.Redactor.example
done = []
def slow(self, example):
    done.append(1)
    if len(done) == 100:
        marker.touch()
    if len(done) >= 100:
        time.sleep(0.01)
    return original(self, example)
redaction.Redactor.example = slow
from wilson_core.cli import main
sys.exit(main())
"""


def test_an_export_killed_by_sigint_leaves_no_file_under_the_final_name(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "big.db"
    con = sqlite3.connect(db)
    from wilson_core import open_store

    open_store(db).close()
    con.execute("INSERT INTO runs (id, call_type, started_at) VALUES ('r', 'agent', '2026')")
    con.executemany(
        "INSERT INTO interactions (id, run_id, sequence_num, call_type, model, provider, messages_json,"
        " response_content, status, created_at) VALUES (?, 'r', ?, 'agent', 'm', 'p', ?, ?, 'ok', ?)",
        ((f"i{n}", n, json.dumps([{"role": "user", "content": f"q{n} " * 20}]), f"a{n} " * 40, f"2026-{n:09d}")
         for n in range(3_000)),
    )
    con.commit()
    con.close()
    out, started = tmp_path / "out.jsonl", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXPORT, str(started), "--db", str(db), "export", "sft", "--out", str(out), "-q",
         "--redact"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # as from a terminal: a test run started in the background ('... &') has SIGINT ignored, the child
        # would inherit that, and Python keeps an ignored SIGINT ignored (the export would just finish)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (started.exists() and any(p.name.endswith(".part") for p in tmp_path.iterdir())):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)  # 2,900 examples of 10 ms each are still to come
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


# -- configuration ----------------------------------------------------------


def test_pyproject_defaults_apply_and_flags_win(sample, tmp_path, capsys, monkeypatch):
    store, _ = sample
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wilson.export]\nmin-rating = 5\ncall-type = ["agent", "categorize"]\nredact = true\n'
    )
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", "a.jsonl", "-q")
    manifest = json.loads((tmp_path / "a.jsonl.manifest.json").read_text())
    assert code == 0 and manifest["counts"]["total"] == 3
    assert manifest["options"]["call_types"] == ["agent", "categorize"] and manifest["options"]["redact"]
    code, _, _ = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", "b.jsonl", "-q",
                         "--min-rating", "2", "--no-redact")
    manifest = json.loads((tmp_path / "b.jsonl.manifest.json").read_text())
    assert code == 0 and manifest["counts"]["total"] == 4 and manifest["options"]["redact"] is False


def test_unknown_pyproject_keys_are_refused(sample, tmp_path, capsys, monkeypatch):
    store, _ = sample
    (tmp_path / "pyproject.toml").write_text("[tool.wilson.export]\nmin_ratting = 5\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out", "a.jsonl")
    assert code == 1 and "min_ratting" in err


def test_custom_redaction_rules_from_the_hook_are_applied(sample, tmp_path):
    import re

    from wilson_core import hookimpl
    from wilson_core.plugins import plugin_manager

    class CustomerIds:
        name = "CUSTOMER_ID"

        def find(self, text):
            return [m.span() for m in re.finditer(r"\bcheck(?:ing)\b", text)]

    class Plugin:
        @hookimpl
        def wilson_redaction_rules(self):
            return [CustomerIds()]

    store, _ = sample
    pm = plugin_manager()
    pm.register(Plugin(), name="customer-ids")
    try:
        rows, manifest = export(store, tmp_path, format="sft", call_types=["agent"], redact=True)
    finally:
        pm.unregister(name="customer-ids")
    assert rows[0]["messages"][1]["content"].endswith("what is my <CUSTOMER_ID_1> balance?")
    assert rows[0]["messages"][2]["tool_calls"][1]["function"]["arguments"] == {"account": "<CUSTOMER_ID_1>"}
    assert manifest["redaction"]["replaced"]["CUSTOMER_ID"] >= 3


def test_malformed_tool_calls_and_empty_answers_are_skipped_and_counted(tmp_path):
    from wilson_core import open_store

    store = open_store(tmp_path / "m.db")
    context = [{"role": "user", "content": "balance?"}]
    store.write_interactions([
        Interaction(run_id="a", sequence_num=1, call_type="agent", provider="p", model="m", messages=context,
                    tool_calls=[ToolCall(id="c1", name="get_balance", raw_arguments='{"account": chec')]),
        Interaction(run_id="b", sequence_num=1, call_type="agent", provider="p", model="m", messages=context,
                    response_content=None),
        Interaction(run_id="c", sequence_num=1, call_type="agent", provider="p", model="m", messages=context,
                    response_content="42 EUR"),
    ])
    rows, manifest = export(store, tmp_path, format="sft")
    assert [row["messages"][-1]["content"] for row in rows] == ["42 EUR"]
    assert manifest["counts"]["skipped"] == {"empty_answer": 1, "malformed_tool_call": 1}


@pytest.mark.parametrize("rule", ["not a rule", "raises"])
def test_a_broken_redaction_plugin_is_a_clear_error_and_nothing_is_written(sample, tmp_path, capsys, rule):
    from wilson_core import hookimpl
    from wilson_core.plugins import plugin_manager

    class Raising:
        name = "BROKEN"

        def find(self, text):
            raise ValueError("bad pattern")

    class Plugin:
        @hookimpl
        def wilson_redaction_rules(self):
            return ["just a string"] if rule == "not a rule" else [Raising()]

    store, _ = sample
    pm = plugin_manager()
    pm.register(Plugin(), name="broken-rules")
    try:
        code, _, err = run_cli(capsys, "--db", str(store.path), "export", "sft", "--out",
                               str(tmp_path / "x.jsonl"), "--redact", "-q")
    finally:
        pm.unregister(name="broken-rules")
    assert code == 1 and "Traceback" not in err
    assert ("a rule needs a 'name'" in err) if rule == "not a rule" else ("rule 'BROKEN'" in err)
    assert not (tmp_path / "x.jsonl").exists()


def test_a_progress_bar_runs_on_stderr_when_it_is_a_terminal(sample, tmp_path, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    store, _ = sample
    run_export(store, ExportOptions(format="sft"), tmp_path / "p.jsonl", progress=True)
    assert "export sft" in terminal.getvalue() and "7/7" in terminal.getvalue()
