"""wilson eval in batches and over several files: padded greedy generation writes what one-by-one
generation writes, batched teacher forcing gives the same log-likelihoods, each data file gets its
own scores, and each model is loaded once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wilson_train.evaluate import (
    Example,
    data_files,
    evaluate_model,
    format_table,
    load_examples,
    reference_log_likelihoods,
    reference_tokens,
)

MAX_NEW = 20


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_local(tiny_model):
    from wilson_train.provider import LocalModel

    return LocalModel(str(tiny_model), device="cpu")


@pytest.fixture(scope="module")
def tuned_local(sft_run):
    from wilson_train.provider import LocalModel

    return LocalModel(str(sft_run), device="cpu")


def _top_two_margin(local, ids: list[int]) -> float:
    import torch  # noqa: TID251

    with torch.no_grad():
        logits = local.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


@pytest.mark.parametrize("group", ["categorisation", "tool calling", "both"])
def test_batched_greedy_generation_writes_what_one_by_one_generation_writes(tiny_local, data_dir, group):
    from wilson_train.provider import MIN_SHARED_PREFIX, shared_prefix_length

    categorisation = [{"messages": r["messages"], "tools": None} for r in _rows(data_dir / "eval.jsonl")]
    tool_calling = _rows(data_dir / "tools.jsonl")[:4]
    rows = {"categorisation": categorisation, "tool calling": tool_calling, "both": categorisation + tool_calling}[group]
    conversations = [r["messages"][:2] for r in rows]
    tools = [r.get("tools") for r in rows]
    prompts = [tiny_local.prompt_ids(c, t) for c, t in zip(conversations, tools, strict=True)]
    assert len({len(p) for p in prompts}) > 2  # rows of different lengths: the batch is padded
    if group != "both":  # one system prompt (and tool list): its cache is shared by the rows
        assert shared_prefix_length(prompts) >= MIN_SHARED_PREFIX

    batched = tiny_local.generate_batch(conversations, tools, max_new_tokens=MAX_NEW)
    batched_tokens = tiny_local.greedy_tokens(prompts, MAX_NEW)
    same = 0
    for index, (prompt, conversation, row_tools) in enumerate(zip(prompts, conversations, tools, strict=True)):
        alone = tiny_local.greedy_tokens([prompt], MAX_NEW)[0]
        text, prompt_tokens, new_tokens = tiny_local.generate(conversation, row_tools, max_new_tokens=MAX_NEW)
        assert prompt_tokens == len(prompt) == batched[index][1]
        assert new_tokens == len(alone)  # the plain generate() path agrees with a batch of one
        if batched_tokens[index] == alone:
            same += 1
            assert batched[index] == (text, prompt_tokens, new_tokens)
        else:
            # float noise of padded matrix shapes may only flip a near tie
            step = next(i for i, (a, b) in enumerate(zip(batched_tokens[index], alone, strict=False)) if a != b)
            assert _top_two_margin(tiny_local, prompt + alone[:step]) < 1e-3
    assert same >= len(prompts) - 1
    lengths = [len(t) for t in batched_tokens]
    assert all(t[-1] == tiny_local.tokenizer.eos_token_id for t in batched_tokens if len(t) < MAX_NEW)
    if group == "both":  # each row stops at its own end-of-sequence token while longer rows go on
        assert min(lengths) < MAX_NEW and max(lengths) == MAX_NEW


def test_generate_batch_needs_one_tool_list_per_conversation(tiny_local):
    with pytest.raises(ValueError, match="2 conversations but 1 tool lists"):
        tiny_local.generate_batch([[{"role": "user", "content": "a"}]] * 2, [None], max_new_tokens=2)


def _unpadded_log_likelihood(local, example: Example) -> float:
    """The per-example computation ``wilson eval`` did before batching: one unpadded forward."""
    import torch  # noqa: TID251

    ids, positions = reference_tokens(local.tokenizer, example)
    with torch.no_grad():
        logprobs = torch.log_softmax(local.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    return sum(float(logprobs[p - 1, ids[p]]) for p in positions if p > 0) / len(positions)


@pytest.mark.parametrize("only_needed_logits", [True, False], ids=["logits_to_keep", "all logits"])
def test_batched_reference_log_likelihoods_equal_unpadded_forward_passes(tuned_local, data_dir, monkeypatch,
                                                                         only_needed_logits):
    from wilson_train import evaluate
    from wilson_train.provider import MIN_SHARED_PREFIX, shared_prefix_length

    assert evaluate._keeps_logits(tuned_local.model)  # Llama takes logits_to_keep
    monkeypatch.setattr(evaluate, "_keeps_logits", lambda model: only_needed_logits)

    categorisation = load_examples(data_dir / "eval.jsonl")
    examples = load_examples(data_dir / "tools.jsonl") + categorisation
    # one system prompt: its tokens are run once for the batch
    assert shared_prefix_length([reference_tokens(tuned_local.tokenizer, e)[0] for e in categorisation]) >= MIN_SHARED_PREFIX
    expected = [_unpadded_log_likelihood(tuned_local, e) for e in examples]
    for batch_size, max_tokens in ((16, 4096), (3, 4096), (16, 700)):
        got = reference_log_likelihoods(tuned_local, examples, batch_size, max_batch_tokens=max_tokens)
        assert got == pytest.approx(expected, abs=1e-4)
    assert reference_log_likelihoods(tuned_local, categorisation, 16) == pytest.approx(expected[8:], abs=1e-4)
    assert len({round(v, 3) for v in expected}) > 3  # distinct values: a mix-up of rows would show


def test_eval_scores_do_not_depend_on_the_batch_size(tuned_local, data_dir):
    examples = load_examples(data_dir / "tools.jsonl") + load_examples(data_dir / "eval.jsonl")
    one, one_answers = evaluate_model(tuned_local, examples, MAX_NEW, batch_size=1)
    many, many_answers = evaluate_model(tuned_local, examples, MAX_NEW, batch_size=5)
    assert one_answers == many_answers
    assert many == pytest.approx(one, abs=1e-4)
    assert many["examples"] == 14
    assert many["tool_examples"] == sum(1 for e in examples if e.reference.get("tool_calls"))
    without, answers = evaluate_model(tuned_local, examples, MAX_NEW, batch_size=5, log_likelihood=False)
    assert without["avg_log_likelihood"] is None and answers == many_answers
    assert without["exact_match"] == many["exact_match"]


def test_data_files_are_named_by_stem_or_by_label(tmp_path):
    seen = tmp_path / "seen.eval.jsonl"
    seen.write_text("")
    other = tmp_path / "b" / "seen.eval.jsonl"
    assert data_files(str(seen)) == [("seen.eval", str(seen))]
    assert data_files([str(seen), f"new={tmp_path / 'x.jsonl'}", str(other)]) == [
        ("seen.eval", str(seen)), ("new", str(tmp_path / "x.jsonl")), ("seen.eval-2", str(other))
    ]


def test_wilson_eval_reports_each_data_file_and_loads_each_model_once(
        sft_run, tiny_model, data_dir, tmp_path, capsys, monkeypatch):
    from wilson_train import provider

    from wilson_core.cli import main

    loads = []
    real_init = provider.LocalModel.__init__

    def counting_init(self, name, adapter=None, device=None):
        loads.append(name)
        real_init(self, name, adapter=adapter, device=device)

    monkeypatch.setattr(provider.LocalModel, "__init__", counting_init)
    out = tmp_path / "eval.json"
    code = main(["eval", "--data", str(data_dir / "tools.jsonl"), "--data", f"cats={data_dir / 'eval.jsonl'}",
                 "--base", str(tiny_model), "--tuned", str(sft_run), "--max-new-tokens", "12",
                 "--batch-size", "4", "--samples", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert len(loads) == 2  # base once, tuned once, for both files
    report = json.loads(out.read_text())
    assert list(report["subsets"]) == ["tools", "cats"]
    assert report["data"] == [str(data_dir / "tools.jsonl"), str(data_dir / "eval.jsonl")]
    tools, cats = report["subsets"]["tools"], report["subsets"]["cats"]
    assert tools["models"]["tuned"]["examples"] == 8 and cats["models"]["tuned"]["examples"] == 6
    assert cats["models"]["tuned"]["tool_examples"] == 0
    for label in ("base", "tuned"):
        overall = report["models"][label]
        assert overall["examples"] == 14
        pooled = (8 * tools["models"][label]["exact_match"] + 6 * cats["models"][label]["exact_match"]) / 14
        assert overall["exact_match"] == pytest.approx(pooled)
        # the categorisation subset's exact match, recounted from its answers
        rows = [r for r in report["answers"] if r["subset"] == "cats"]
        recount = sum(r[label].casefold().strip() == r["reference"].casefold() for r in rows) / len(rows)
        assert cats["models"][label]["exact_match"] == pytest.approx(recount)
    assert report["settings"]["batch_size"] == 4 and report["timing"]["tuned"]["eval_s"] >= 0
    assert report["disagreements"] == tools["disagreements"] + cats["disagreements"]
    assert "== tools" in printed and "== cats" in printed and "== overall" in printed
    summary = printed[printed.index("subset "):].splitlines()
    assert [line.split()[0] for line in summary[2:5]] == ["tools", "cats", "overall"]
    assert format_table(report).count("avg_log_likelihood") == 3


def test_wilson_eval_without_log_likelihood_scores_answers_only(sft_run, tiny_model, data_dir, tmp_path, capsys):
    from wilson_core.cli import main

    out = tmp_path / "eval.json"
    code = main(["eval", "--data", str(data_dir / "eval.jsonl"), "--base", str(tiny_model), "--tuned", str(sft_run),
                 "--max-new-tokens", "8", "--no-log-likelihood", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["data"] == str(data_dir / "eval.jsonl")  # one file: the path, as before
    assert report["models"]["tuned"]["avg_log_likelihood"] is None
    assert report["models"]["tuned"]["exact_match"] is not None
    assert "avg_log_likelihood" not in printed and "exact_match" in printed


def test_wilson_eval_names_a_missing_second_file_before_loading_anything(sft_run, tiny_model, data_dir, capsys):
    from wilson_core.cli import main

    code = main(["eval", "--data", str(data_dir / "eval.jsonl"), "--data", "nowhere/new.jsonl",
                 "--base", str(tiny_model), "--tuned", str(sft_run)])
    assert code == 1
    assert "nowhere/new.jsonl: no such file" in capsys.readouterr().err
    assert main(["eval", "--data", str(data_dir / "eval.jsonl"), "--base", str(tiny_model), "--tuned", str(sft_run),
                 "--batch-size", "0"]) == 2


def test_samples_are_taken_in_turn_from_each_file():
    from wilson_train.evaluate import _spread

    seen = [{"subset": "seen", "n": i} for i in range(3)]
    new = [{"subset": "new", "n": i} for i in range(1)]
    assert [(r["subset"], r["n"]) for r in _spread([seen, new], 4)] == [("seen", 0), ("new", 0), ("seen", 1), ("seen", 2)]
    assert _spread([seen, new], 1) == [seen[0]] and _spread([[], []], 3) == []
