"""The demo's data is a function of its seed: same seed, same bytes; another seed, other data.

Also: the export's eval split depends on what the runs contain and on the seed, never
on run ids or capture times; and the demo's summary says MISSED where a target is missed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wilson_core.demo import summary

FILES = ("export/sft.jsonl", "export/sft.eval.jsonl", "export/dpo.jsonl", "export/agent-sft.jsonl",
         "heldout/seen-merchants.jsonl", "heldout/new-merchants.jsonl")


def _data(out: Path, seed: int) -> dict[str, bytes]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", "demo", "--fast", "--data-only", "--seed", str(seed),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "Data written (--data-only)" in result.stdout
    return {name: (out / name).read_bytes() for name in FILES}


def test_two_demo_runs_with_one_seed_write_byte_identical_exports_and_heldout_sets(tmp_path):
    pytest.importorskip("wilson_exporters")
    first, second, other = _data(tmp_path / "a", 3), _data(tmp_path / "b", 3), _data(tmp_path / "c", 4)
    for name in FILES:
        assert first[name], name
        assert first[name] == second[name], f"{name} differs between two runs with the same seed"
    assert all(first[name] != other[name] for name in FILES if "agent" not in name)
    teacher = json.loads((tmp_path / "a" / "demo-summary.json").read_text())["teacher"]
    assert set(teacher) == {"seen-merchants", "new-merchants"}
    assert all(0.3 < value < 0.9 for value in teacher.values()), teacher


def _capture(db: Path, lines: list[str]) -> None:
    from wilson_core.facade import LLM

    llm = LLM("scripted:echo", db=str(db), script=lambda messages, tools: messages[-1]["content"].upper())
    for line in lines:
        llm.chat([{"role": "user", "content": line}], call_type="t")
    llm.close()


def _split(db: Path, out: Path, seed: int) -> tuple[set[str], set[str]]:
    from wilson_core.cli import main

    assert main(["--db", str(db), "export", "sft", "--out", str(out), "--eval-split", "0.25",
                 "--seed", str(seed)]) == 0
    train = set(out.read_text().splitlines())
    evaluation = set(out.with_name(out.stem + ".eval.jsonl").read_text().splitlines())
    return train, evaluation


def test_the_eval_split_depends_on_content_and_seed_not_on_run_ids_or_capture_order(tmp_path):
    pytest.importorskip("wilson_exporters")
    lines = [f"question {n}" for n in range(40)] + ["question 7"]  # a repeat: same split as its twin
    _capture(tmp_path / "a.db", lines)
    _capture(tmp_path / "b.db", list(reversed(lines)))  # other ids, other times, other order
    train_a, eval_a = _split(tmp_path / "a.db", tmp_path / "a.jsonl", seed=5)
    train_b, eval_b = _split(tmp_path / "b.db", tmp_path / "b.jsonl", seed=5)
    assert (train_a, eval_a) == (train_b, eval_b)
    assert 8 <= len(eval_a) <= 11 and not train_a & eval_a
    _, eval_other = _split(tmp_path / "a.db", tmp_path / "c.jsonl", seed=6)
    assert eval_other != eval_a


def _report(fast: bool, **sets: dict[str, float]) -> dict:
    return {"out": "/x", "db": "/x/data.db", "config": {"fast": fast}, "eval": sets}


def test_the_summary_flags_every_missed_target_and_compares_teacher_base_and_tuned():
    report = _report(False, **{"seen-merchants": {"teacher": 0.6, "base": 0.1, "tuned": 0.95},
                              "new-merchants": {"teacher": 0.75, "base": 0.1, "tuned": 0.72}})
    assert summary.misses(report) == ["merchants never seen: tuned 0.72 < teacher 0.75"]
    text = summary.render(report)
    assert "| held-out set | teacher | base | tuned | target | met |" in text
    assert "| merchants seen in training | 0.60 | 0.10 | 0.95 | >= 0.90 and >= teacher 0.60 | yes |" in text
    assert "**MISSED**" in text and "- MISSED: merchants never seen: tuned 0.72 < teacher 0.75" in text
    report["eval"]["seen-merchants"]["tuned"] = 0.85
    assert "merchants seen in training: tuned 0.85 < target 0.90" in summary.misses(report)


def test_with_fast_the_tuned_model_must_beat_the_base_on_seen_merchants_with_the_enum_enforced():
    tie = _report(True, **{"seen-merchants": {"teacher": 0.6, "base": 0.4, "tuned": 0.4,
                                              "unconstrained": {"base": 0.0, "tuned": 0.3}},
                          "new-merchants": {"teacher": 0.6, "base": 0.0, "tuned": 0.0}})
    # beating the base in free decoding is not enough: the app runs with its enum enforced
    assert summary.misses(tie) == ["merchants seen in training: tuned 0.40 <= base 0.40"]
    assert "| merchants seen in training | 0.60 | 0.40 (0.00) | 0.40 (0.30) | > base 0.40 | **MISSED** |" in (
        summary.render(tie))
    tie["eval"]["seen-merchants"]["tuned"] = 0.5
    assert summary.misses(tie) == []
    assert "MISSED" not in summary.render(tie)


def test_the_apps_request_names_the_merchant_as_a_bank_feed_spells_it():
    from wilson_core.demo import finance

    user = finance.categorise_messages("2026-10-04 SAFEWAY CARD 4111 1111 1111 1111 -12.00 EUR")[1]["content"]
    assert user == "Transaction: 2026-10-04 SAFEWAY CARD 4111 1111 1111 1111 -12.00 EUR\nMerchant: Safeway"
    assert finance.merchant_name("CVS PHARMACY") == "CVS Pharmacy", "a word without a vowel is an acronym"
    assert finance.merchant_name("H&M STORE") == "H&M Store"
    # every merchant of both tables is found in its own line and named
    for table in (finance._MERCHANTS, finance._NEW_MERCHANTS):
        for merchants in table.values():
            for merchant in merchants:
                content = finance.categorise_messages(f"2026-10-01 {merchant} -1.00 EUR")[1]["content"]
                assert content.endswith(f"\nMerchant: {finance.merchant_name(merchant)}")
    # a line naming no known merchant is sent as it is
    assert finance.categorise_messages("2026-10-01 SOMETHING ELSE -1.00 EUR")[1]["content"] == (
        "Transaction: 2026-10-01 SOMETHING ELSE -1.00 EUR")


def test_the_summary_quotes_the_measured_spread_only_for_the_settings_it_was_measured_with():
    report = _report(False, **{"seen-merchants": {"teacher": 0.6, "base": 0.1, "tuned": 0.95},
                              "new-merchants": {"teacher": 0.6, "base": 0.1, "tuned": 0.9}})
    report["config"].update(base="smollm2-135m", count=200, steps=48, lr=2e-3, heldout=40, dpo=False, seed=3)
    quoted = ("- Tuned, the same settings over seeds 0-4 (min / median / max, docs/tutorial.md): "
              "merchants seen in training 0.950 / 1.000 / 1.000; merchants never seen 0.850 / 0.900 / 0.975")
    assert quoted in summary.render(report)
    report["config"]["steps"] = 96
    assert "over seeds 0-4" not in summary.render(report)
