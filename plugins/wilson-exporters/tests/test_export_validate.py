"""``wilson export validate``: schema of every line, rendering through a chat template, token stats."""

from __future__ import annotations

import json

import pytest

from wilson_core.cli import main
from wilson_core.exporting import ExportOptions, run_export

pytestmark = pytest.mark.slow


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("fmt", ["sft", "dpo", "kto", "openai-chat"])
def test_every_format_validates_against_the_tiny_tokenizer(sample, tiny_model, tmp_path, capsys, fmt):
    store, _ = sample
    out = tmp_path / f"{fmt}.jsonl"
    run_export(store, ExportOptions(format=fmt), out)
    code, stdout, err = run_cli(capsys, "export", "validate", out, "--tokenizer", tiny_model)
    assert code == 0, err
    assert f"format {fmt}" in stdout and "tokens: min" in stdout and stdout.rstrip().endswith("OK")


def test_bad_lines_are_reported_with_their_numbers(sample, tiny_model, tmp_path, capsys):
    store, _ = sample
    out = tmp_path / "sft.jsonl"
    run_export(store, ExportOptions(format="sft"), out)
    good = out.read_text().splitlines()
    broken = [
        good[0],
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}]}),
    ]
    out.write_text("\n".join(broken) + "\n")
    code, stdout, err = run_cli(capsys, "export", "validate", out, "--tokenizer", tiny_model, "--json")
    assert code == 1
    report = json.loads(stdout)
    assert [f["line"] for f in report["failures"]] == [2, 3, 4]
    assert "not valid JSON" in report["failures"][0]["error"]
    assert "end with the assistant" in report["failures"][1]["error"]
    assert "must be an object" in report["failures"][2]["error"]
    assert report["lines"] == 4 and report["tokens"]["counted"] == 1
    assert "Error: 3 problem(s)" in err


def test_a_template_without_generation_markers_fails_assistant_only_loss(sample, tiny_model, tmp_path, capsys):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model)
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    plain = tmp_path / "plain-tokenizer"
    tokenizer.save_pretrained(plain)
    store, _ = sample
    out = tmp_path / "sft.jsonl"
    run_export(store, ExportOptions(format="sft"), out)
    code, _, err = run_cli(capsys, "export", "validate", out, "--tokenizer", plain)
    assert code == 1 and "does not mark assistant turns" in err
    code, _, err = run_cli(capsys, "export", "validate", out, "--tokenizer", plain, "--no-assistant-only-loss")
    assert code == 0, err


def test_validate_reports_lines_over_max_tokens(sample, tiny_model, tmp_path, capsys):
    store, _ = sample
    out = tmp_path / "sft.jsonl"
    run_export(store, ExportOptions(format="sft"), out)
    code, stdout, _ = run_cli(capsys, "export", "validate", out, "--tokenizer", tiny_model, "--max-tokens", "60",
                              "--json")
    report = json.loads(stdout)
    assert code == 1 and report["tokens"]["over_max_tokens"] == report["failed_lines"] > 0
    assert report["tokens"]["max"] > 60


def test_export_max_tokens_counts_with_the_tokenizer_chat_template(sample, tiny_model, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model)
    store, _ = sample
    full = run_export(store, ExportOptions(format="sft"), tmp_path / "all.jsonl")
    lengths = [
        len(tokenizer.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=True,
                                          return_dict=True)["input_ids"])
        for row in map(json.loads, (tmp_path / "all.jsonl").read_text().splitlines())
    ]
    limit = sorted(lengths)[3]
    manifest = run_export(store, ExportOptions(format="sft", max_tokens=limit, tokenizer=str(tiny_model)),
                          tmp_path / "short.jsonl")
    assert manifest["counts"]["total"] == sum(n <= limit for n in lengths) < full["counts"]["total"]
    assert sorted(e["tokens"] for e in manifest["max_tokens"]["examples"]) == sorted(n for n in lengths if n > limit)
    assert manifest["max_tokens"]["counted_with"] == f"chat template of {tiny_model}"


def test_an_unknown_file_format_asks_for_format(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "hello"}\n')
    code, _, err = run_cli(capsys, "export", "validate", path)
    assert code == 1 and "pass --format" in err
