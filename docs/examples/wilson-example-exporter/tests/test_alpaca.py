"""The example plugin, installed like any third-party package, works through Wilson's CLI."""

from __future__ import annotations

import json

from wilson_core import open_store
from wilson_core.cli import main
from wilson_core.records import Interaction, ToolCall


def make_store(path):
    store = open_store(path)
    store.write_interactions([
        Interaction(run_id="r1", sequence_num=1, call_type="support", provider="p", model="m",
                    messages=[{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Why was member MBR-123456 charged twice?"}],
                    response_content="MBR-123456 was charged twice because of a retried payment."),
        Interaction(run_id="r2", sequence_num=1, call_type="support", provider="p", model="m",
                    messages=[{"role": "user", "content": "Balance?"}],
                    tool_calls=[ToolCall(id="c1", name="get_balance", arguments={})]),
    ])
    return store


def test_wilson_plugins_lists_the_exporter_and_the_hook(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    exporters = {d["name"]: d for d in data["drivers"]["wilson.exporters"]}
    assert exporters["alpaca"]["distribution"] == "wilson-example-exporter"
    hooks = {h["name"]: h for h in data["hooks"]}
    assert hooks["example_member_ids"]["hooks"] == ["wilson_redaction_rules"]


def test_wilson_export_alpaca_writes_instruction_lines_and_redacts_member_ids(tmp_path, capsys):
    store = make_store(tmp_path / "w.db")
    out = tmp_path / "alpaca.jsonl"
    code = main(["--db", str(store.path), "export", "alpaca", "--out", str(out), "--redact", "-q"])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{
        "instruction": "Why was member <MEMBER_ID_1> charged twice?",
        "input": "Be brief.",
        "output": "<MEMBER_ID_1> was charged twice because of a retried payment.",
    }]
    manifest = json.loads((tmp_path / "alpaca.jsonl.manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"refused_by_exporter": 1}
    assert manifest["redaction"]["replaced"] == {"MEMBER_ID": 2}


def test_validate_checks_alpaca_lines(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": 1}\n')
    assert main(["export", "validate", str(path), "--format", "alpaca"]) == 1
    assert "line 2: instruction must be text" in capsys.readouterr().err


def test_exporter_options_reach_the_exporter(tmp_path, capsys):
    store = make_store(tmp_path / "w.db")
    out = tmp_path / "alpaca.jsonl"
    code = main(["--db", str(store.path), "export", "alpaca", "--out", str(out), "-q",
                 "--option", "include_system=false"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["input"] == ""
