"""Exporting training data: golden lines of each format, filters, splits, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wilson_core import annotations
from wilson_core.exporting import ExportOptions, count_records, iter_records, run_export
from wilson_core.exporting.examples import merge_run
from wilson_core.exporting.options import ExportError
from wilson_core.records import Interaction, ToolCall

samples = pytest.importorskip("wilson_exporters.samples")

SYSTEM = {"role": "system", "content": samples.SYSTEM}
QUESTION = {"role": "user", "content": samples.QUESTION}
FIRST_CALLS = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "call_search", "type": "function",
         "function": {"name": "search_transactions", "arguments": {"category": "groceries", "month": "2026-10"}}},
        {"id": "call_balance", "type": "function",
         "function": {"name": "get_balance", "arguments": {"account": "checking"}}},
    ],
}
SEARCH_RESULT = {"role": "tool", "name": "search_transactions", "content": "3 transactions, total 212.40 EUR",
                 "tool_call_id": "call_search"}
FAILED_TOOL = {"role": "tool", "name": "get_balance", "content": "Error: bank API timed out",
               "tool_call_id": "call_balance"}
RETRY = {
    "role": "assistant",
    "content": "Retrying the balance.",
    "tool_calls": [{"id": "call_balance_2", "type": "function",
                    "function": {"name": "get_balance", "arguments": {"account": "checking"}}}],
}
RETRY_RESULT = {"role": "tool", "name": "get_balance", "content": "1,234.56 EUR", "tool_call_id": "call_balance_2"}
FINAL = {"role": "assistant", "content": samples.FINAL}
AGENT_CONVERSATION = [SYSTEM, QUESTION, FIRST_CALLS, SEARCH_RESULT, FAILED_TOOL, RETRY, RETRY_RESULT, FINAL]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def export(store, tmp_path, name="out.jsonl", **options):
    manifest = run_export(store, ExportOptions(**options), tmp_path / name)
    return lines(tmp_path / name), manifest


# -- golden lines --------------------------------------------------------------


def test_sft_writes_each_answer_with_the_context_it_saw_and_the_tools_offered(sample, tmp_path):
    store, ids = sample
    rows, manifest = export(store, tmp_path, format="sft", call_types=["agent"])
    assert [row["messages"] for row in rows] == [
        AGENT_CONVERSATION[:3],
        AGENT_CONVERSATION[:6],
        AGENT_CONVERSATION,
    ]
    assert all(row["tools"] == samples.TOOLS for row in rows)
    saved = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert saved["interaction_ids"]["train"] == list(ids.agent) and manifest["counts"]["train"] == 3


def test_tool_messages_carry_the_name_of_the_call_they_answer_even_when_the_app_left_it_out(sample, tmp_path):
    store, _ = sample
    rows, _ = export(store, tmp_path, format="sft", call_types=["agent"])
    tool_messages = [m for m in rows[-1]["messages"] if m["role"] == "tool"]
    assert [m["name"] for m in tool_messages] == ["search_transactions", "get_balance", "get_balance"]


def test_a_corrected_answer_replaces_the_original_and_unicode_survives(sample, tmp_path):
    store, _ = sample
    rows, _ = export(store, tmp_path, format="sft", call_types=["categorize"])
    assert rows[0] == {
        "messages": [
            {"role": "user", "content": samples.UNICODE_PROMPT},
            {"role": "assistant", "content": samples.CORRECTION},
        ]
    }
    assert samples.UNICODE_PROMPT in (tmp_path / "out.jsonl").read_text(encoding="utf-8")


def test_failed_calls_and_deleted_runs_are_never_exported(sample, tmp_path):
    store, ids = sample
    _, manifest = export(store, tmp_path, format="sft")
    used = set(json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["interaction_ids"]["train"])
    assert ids.failed not in used and ids.deleted not in used
    assert manifest["counts"]["train"] == 7


def test_dpo_pairs_come_from_explicit_pairs_and_corrections(sample, tmp_path):
    store, _ = sample
    rows, manifest = export(store, tmp_path, format="dpo")
    assert rows == [
        {
            "prompt": [SYSTEM, {"role": "user", "content": samples.SUMMARY_PROMPT}],
            "chosen": [{"role": "assistant", "content": "You spent 640 EUR, mostly on rent and groceries."}],
            "rejected": [{"role": "assistant", "content": "Spending happened."}],
        },
        {
            "prompt": [{"role": "user", "content": samples.UNICODE_PROMPT}],
            "chosen": [{"role": "assistant", "content": samples.CORRECTION}],
            "rejected": [{"role": "assistant", "content": "Dining"}],
        },
    ]
    assert manifest["counts"]["by_origin"] == {"correction": 1, "pair:human": 1}


def test_dpo_harvests_pairs_from_high_and_low_ratings_of_one_context_keeping_tool_calls(tmp_path):
    store = samples_store_with_two_answers(tmp_path)
    rows, manifest = export(store, tmp_path, format="dpo")
    assert len(rows) == 1 and manifest["counts"]["by_origin"] == {"harvested": 1}
    assert rows[0]["chosen"][0]["tool_calls"][0]["function"] == {"name": "get_balance", "arguments": {"account": "checking"}}
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "I cannot know that."}]
    rows, _ = export(store, tmp_path, name="none.jsonl", format="dpo", harvest_pairs=False)
    assert rows == []


def samples_store_with_two_answers(tmp_path):
    from wilson_core import open_store

    store = open_store(tmp_path / "two.db")
    context = [{"role": "user", "content": "Balance of checking?"}]
    good = Interaction(run_id="a", sequence_num=1, call_type="agent", provider="p", model="m",
                       messages=context, tool_calls=[ToolCall(id="c1", name="get_balance",
                                                              arguments={"account": "checking"})],
                       tools=samples.TOOLS[1:])
    bad = Interaction(run_id="b", sequence_num=1, call_type="agent", provider="p", model="m",
                      messages=context, response_content="I cannot know that.", tools=samples.TOOLS[1:])
    store.write_interactions([good, bad])
    annotations.rate(store, good.id, 5)
    annotations.rate(store, bad.id, 1)
    return store


def test_kto_labels_follow_the_configurable_thresholds(sample, tmp_path):
    store, _ = sample
    rows, manifest = export(store, tmp_path, format="kto")
    labels = [(row["completion"][0]["content"], row["label"]) for row in rows]
    assert labels == [
        ("", True),
        ("Retrying the balance.", True),
        (samples.FINAL, True),
        ("Dining", False),
        (samples.CORRECTION, True),
        ("Spending happened.", False),
    ]
    assert manifest["counts"]["skipped"] == {"rating_between_thresholds": 1}
    rows, _ = export(store, tmp_path, name="k3.jsonl", format="kto", kto_desirable=3, kto_undesirable=2)
    assert ("You spent 640 EUR, mostly on rent and groceries.", True) in [
        (row["completion"][0]["content"], row["label"]) for row in rows
    ]


def test_openai_chat_has_string_arguments_and_no_empty_tools(sample, tmp_path):
    store, _ = sample
    rows, _ = export(store, tmp_path, format="openai-chat")
    call = rows[0]["messages"][2]["tool_calls"][0]
    assert call == {"id": "call_search", "type": "function", "function": {
        "name": "search_transactions", "arguments": json.dumps({"category": "groceries", "month": "2026-10"})}}
    assert rows[0]["messages"][2]["content"] is None
    assert {"role": "tool", "content": "1,234.56 EUR", "tool_call_id": "call_balance_2"} in rows[2]["messages"]
    assert "tools" not in rows[3] and rows[0]["tools"] == samples.TOOLS


def test_lines_without_tools_have_no_tools_key(sample, tmp_path):
    """TRL hands a line's tools to the chat template as they are; [] makes some templates
    render their tool preamble, a missing key loads as None."""
    store, _ = sample
    for fmt in ("sft", "dpo", "kto"):
        rows, _ = export(store, tmp_path, name=f"{fmt}.jsonl", format=fmt)
        assert all(row.get("tools", "absent") in ("absent", samples.TOOLS) for row in rows)
        assert any("tools" not in row for row in rows)


# -- per-run granularity -----------------------------------------------------------


def test_a_run_becomes_one_conversation_with_every_turn_once(sample, tmp_path):
    store, ids = sample
    rows, manifest = export(store, tmp_path, format="sft", granularity="run", call_types=["agent"])
    assert rows == [{"messages": AGENT_CONVERSATION, "tools": samples.TOOLS}]
    assert manifest["counts"]["train"] == 1
    saved = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert saved["interaction_ids"]["train"] == list(ids.agent)


def test_run_merge_keeps_turns_the_app_did_not_paste_back_and_adds_missing_tool_results():
    system = {"role": "system", "content": "s"}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": {"q": "x"}}}]}
    result = {"role": "tool", "name": "lookup", "content": "42", "tool_call_id": "t1"}
    steps = [
        ([system, {"role": "user", "content": "first"}], call, [result]),
        # the app sent only the new question: the earlier turns and the tool result must stay, once
        ([system, {"role": "user", "content": "second"}], {"role": "assistant", "content": "done"}, []),
    ]
    assert merge_run(steps) == [
        system, {"role": "user", "content": "first"}, call, result,
        {"role": "user", "content": "second"}, {"role": "assistant", "content": "done"},
    ]


def test_per_run_export_is_refused_for_single_answer_formats(sample, tmp_path):
    store, _ = sample
    with pytest.raises(ExportError, match="granularity run"):
        run_export(store, ExportOptions(format="dpo", granularity="run"), tmp_path / "x.jsonl")


# -- filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"min_rating": 4}, 4),  # three agent steps and the corrected answer
        ({"min_rating": 5}, 3),
        ({"min_rating": 5, "include_judge": True}, 4),
        ({"call_types": ["summarize"]}, 2),
        ({"models": ["llama3.2"]}, 2),
        ({"providers": ["openai"], "tags": ["tools"]}, 3),
        ({"tags": ["tools", "final"]}, 1),
        ({"since": "2000-01-01", "until": "2999-01-01"}, 7),
        ({"until": "2000-01-01"}, 0),
    ],
)
def test_filters_narrow_the_selection(sample, tmp_path, options, expected):
    store, _ = sample
    rows, manifest = export(store, tmp_path, format="sft", **options)
    assert len(rows) == expected == manifest["counts"]["total"] == count_records(store, ExportOptions(format="sft", **options))


def test_a_human_label_wins_over_a_judge_label(sample, tmp_path):
    store, ids = sample
    annotations.annotate(store, ids.chosen, rating=1, source="judge", annotator="judge:x", status="proposed")
    rows, _ = export(store, tmp_path, format="sft", min_rating=3, include_judge=True, call_types=["summarize"])
    assert len(rows) == 1 and rows[0]["messages"][-1]["content"].startswith("You spent 640")


def test_bad_options_are_refused_with_a_clear_message():
    with pytest.raises(ExportError, match="eval-split"):
        ExportOptions(format="sft", eval_split=1.5)
    with pytest.raises(ExportError, match="--since"):
        ExportOptions(format="sft", since="last tuesday")
    with pytest.raises(ExportError, match="kto_undesirable"):
        ExportOptions(format="kto", kto_desirable=2, kto_undesirable=3)


# -- split, dedup, length -----------------------------------------------------


def many_runs(tmp_path, runs=20, duplicates=False):
    from wilson_core import open_store

    store = open_store(tmp_path / "many.db")
    batch = []
    for r in range(runs):
        for step in range(2):
            text = "same question" if duplicates else f"question {r}.{step}"
            batch.append(Interaction(run_id=f"run{r:02d}", sequence_num=step, call_type="agent",
                                     provider="p", model="m",
                                     messages=[{"role": "user", "content": text}],
                                     response_content="same answer" if duplicates else f"answer {r}.{step} " + "x" * (r * 40)))
    store.write_interactions(batch)
    return store


def test_eval_split_is_by_run_reproducible_and_written_to_the_eval_twin(tmp_path):
    store = many_runs(tmp_path)
    manifest = run_export(store, ExportOptions(format="sft", eval_split=0.25, seed=7), tmp_path / "train.jsonl")
    saved = json.loads((tmp_path / "train.jsonl.manifest.json").read_text())
    assert (tmp_path / "train.eval.jsonl").is_file()
    assert manifest["counts"] == {**manifest["counts"], "train": 30, "eval": 10}
    runs = {}
    for row in store.connection().execute("SELECT id, run_id FROM interactions"):
        runs[row["id"]] = row["run_id"]
    train_runs = {runs[i] for i in saved["interaction_ids"]["train"]}
    eval_runs = {runs[i] for i in saved["interaction_ids"]["eval"]}
    assert len(eval_runs) == 5 and not train_runs & eval_runs
    again = run_export(store, ExportOptions(format="sft", eval_split=0.25, seed=7), tmp_path / "again.jsonl")
    assert again["files"]["eval"]["sha256"] == manifest["files"]["eval"]["sha256"]
    other = run_export(store, ExportOptions(format="sft", eval_split=0.25, seed=8), tmp_path / "other.jsonl")
    assert other["files"]["eval"]["sha256"] != manifest["files"]["eval"]["sha256"]


def test_dedup_writes_identical_context_and_answer_once(tmp_path):
    store = many_runs(tmp_path, runs=5, duplicates=True)
    rows, manifest = export(store, tmp_path, format="sft", dedup=True)
    assert len(rows) == 1 and manifest["counts"]["skipped"] == {"duplicate": 9}
    assert count_records(store, ExportOptions(format="sft", dedup=True)) == 1
    assert len(export(store, tmp_path, name="all.jsonl", format="sft")[0]) == 10


def test_max_tokens_drops_long_examples_and_reports_them(tmp_path):
    store = many_runs(tmp_path, runs=10)
    rows, manifest = export(store, tmp_path, format="sft", max_tokens=60)
    report = manifest["max_tokens"]
    assert report["over_limit"] == len(report["examples"]) > 0
    assert report["action"] == "dropped" and "estimate" in report["counted_with"]
    assert len(rows) == 20 - report["over_limit"]
    assert all(e["tokens"] > 60 for e in report["examples"])
    kept, manifest = export(store, tmp_path, name="kept.jsonl", format="sft", max_tokens=60, keep_long=True)
    assert len(kept) == 20 and manifest["max_tokens"]["action"] == "kept"


# -- manifest, counting, streaming API -----------------------------------------


def test_the_manifest_traces_the_file_back_to_its_data(sample, tmp_path):
    import hashlib

    store, ids = sample
    manifest = run_export(store, ExportOptions(format="sft", min_rating=4, redact=True), tmp_path / "t.jsonl")
    saved = json.loads((tmp_path / "t.jsonl.manifest.json").read_text())
    data = (tmp_path / "t.jsonl").read_bytes()
    assert saved["files"]["train"] == {"path": "t.jsonl", "lines": 4, "bytes": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest()}
    assert saved["schema_version"] == 1 and "m001_create_capture_tables" in saved["database_migrations"]
    assert saved["options"]["min_rating"] == 4 and saved["options"]["redact"] is True
    assert saved["exporter"]["distribution"] == "wilson-exporters"
    assert saved["interaction_ids"] == {"train": [*ids.agent, ids.corrected]}
    assert saved["redaction"]["enabled"] is True
    assert {k: v for k, v in saved.items() if k != "interaction_ids"} == manifest


@pytest.mark.parametrize(
    "options",
    [
        {"format": "sft"},
        {"format": "sft", "granularity": "run"},
        {"format": "dpo"},
        {"format": "kto", "eval_split": 0.5},
        {"format": "openai-chat", "min_rating": 4, "redact": True},
    ],
)
def test_count_and_iter_records_agree_with_the_written_file(sample, tmp_path, options):
    store, _ = sample
    opts = ExportOptions(**options)
    manifest = run_export(store, opts, tmp_path / "o.jsonl")
    written = lines(tmp_path / "o.jsonl")
    if opts.eval_split:
        written += lines(tmp_path / "o.eval.jsonl")
    assert count_records(store, opts) == manifest["counts"]["total"] == len(written)
    assert sorted(map(json.dumps, iter_records(store, opts))) == sorted(map(json.dumps, written))
