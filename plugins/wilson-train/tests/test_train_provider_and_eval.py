"""The tuned model in use: the transformers provider behind the facade, wilson eval, and an
end-to-end run from captured calls through 'wilson export' to 'wilson train'."""

from __future__ import annotations

import json

import pytest
from wilson_train.evaluate import Answer, exact_match, format_table, token_f1, tool_scores


def test_exact_match_ignores_case_and_spacing_but_not_tool_arguments():
    reference = Answer(content="Groceries", calls=())
    assert exact_match(Answer(content="  groceries ", calls=()), reference) == 1.0
    assert exact_match(Answer(content="Grocery", calls=()), reference) == 0.0
    call = Answer(content="", calls=(("get_spending", '{"category": "Dining"}'),))
    assert exact_match(Answer(content="", calls=(("get_spending", '{"category": "Rent"}'),)), call) == 0.0
    assert tool_scores(Answer(content="", calls=(("get_spending", '{"category": "Rent"}'),)), call) == (1.0, 0.0)
    assert tool_scores(call, call) == (1.0, 1.0)


def test_token_f1_counts_shared_words():
    assert token_f1("You spent 12 dollars", "You spent 12 dollars") == 1.0
    assert token_f1("spent 12", "You spent 12 dollars") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("nothing alike", "You spent") == 0.0


def test_the_transformers_provider_answers_through_the_facade_and_is_captured(sft_run, tiny_model, tmp_path):
    from wilson_train.corpus import TOOLS, tool_conversations

    from wilson_core import LLM, open_store

    db = tmp_path / "wilson.db"
    question = tool_conversations(1, seed=77)[0]["messages"][:2]
    merged = LLM(f"transformers:{sft_run / 'merged'}", db=str(db))
    reply = merged.chat(question, tools=TOOLS, max_tokens=24)
    adapter = LLM(f"transformers:{tiny_model}?adapter={sft_run / 'adapter'}", db=str(db))
    same = adapter.chat(question, tools=TOOLS, max_tokens=24)
    run_folder = LLM(f"transformers:{sft_run}", db=str(db)).chat(question, tools=TOOLS, max_tokens=24)
    # greedy decoding: the merged model and base + adapter write the same answer
    assert (reply.content, [(c.name, c.arguments) for c in reply.tool_calls]) == \
        (same.content, [(c.name, c.arguments) for c in same.tool_calls]) == \
        (run_folder.content, [(c.name, c.arguments) for c in run_folder.tool_calls])
    assert reply.output_tokens and reply.output_tokens <= 24
    store = open_store(str(db))
    stored = store.get_interaction(reply.interaction_id)
    assert stored.provider == "transformers" and stored.status == "ok"


def test_the_trained_model_writes_tool_calls_that_parse(sft_run, data_dir):
    """After SFT on tool-calling conversations, the tiny model's first answer is a tagged tool call
    that the provider turns into a ToolCall (a tiny model may still pick a wrong name)."""
    from wilson_train.provider import TransformersProvider

    provider = TransformersProvider(str(sft_run / "merged"))
    row = json.loads((data_dir / "tools.jsonl").read_text().splitlines()[0])
    response = provider.chat(row["messages"][:2], row["tools"], {"max_tokens": 80})
    assert len(response.tool_calls) >= 1
    assert response.tool_calls[0].name.endswith("_spending") or response.tool_calls[0].name.startswith("categorize")
    assert response.content is None or "<tool_call>" not in response.content


def test_wilson_eval_compares_base_and_tuned_side_by_side(sft_run, tiny_model, data_dir, tmp_path, capsys):
    from wilson_core.cli import main

    out = tmp_path / "eval.json"
    code = main(["eval", "--data", str(data_dir / "tools.jsonl"), "--base", str(tiny_model), "--tuned", str(sft_run),
                 "--limit", "3", "--max-new-tokens", "12", "--samples", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    base, tuned = report["models"]["base"], report["models"]["tuned"]
    assert base["examples"] == tuned["examples"] == 3
    # one file: the single-file shape, plus that file as the only subset
    assert report["data"] == str(data_dir / "tools.jsonl") and list(report["subsets"]) == ["tools"]
    assert report["subsets"]["tools"]["models"] == report["models"]
    # trained on these conversations: the references became more likely
    assert tuned["avg_log_likelihood"] > base["avg_log_likelihood"]
    assert "avg_log_likelihood" in printed and "base" in printed and "tuned" in printed
    assert format_table(report).splitlines()[0].split() == ["metric", "base", "tuned", "delta"]


def test_wilson_eval_refuses_a_dpo_file(tiny_model, sft_run, data_dir):
    from wilson_core.cli import main

    assert main(["eval", "--data", str(data_dir / "dpo.jsonl"), "--base", str(tiny_model), "--tuned", str(sft_run)]) == 1


def test_captured_calls_exported_with_wilson_export_train_a_model(tiny_model, tmp_path, make_config):
    from wilson_train.corpus import TOOLS, tool_conversations
    from wilson_train.trainers import LoraSFTTrainer

    from wilson_core import LLM, annotations, open_store
    from wilson_core.cli import main

    db = tmp_path / "app.db"
    conversations = tool_conversations(8, seed=21)
    script = [c["messages"][2] for c in conversations]
    llm = LLM("scripted:demo", db=str(db), script=script)
    ids = [llm.chat(c["messages"][:2], tools=TOOLS).interaction_id for c in conversations]
    store = open_store(str(db))
    for interaction_id in ids:
        annotations.rate(store, interaction_id, 5)
    data = tmp_path / "train.jsonl"
    assert main(["--db", str(db), "export", "sft", "--out", str(data), "--min-rating", "4"]) == 0
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["tools"] and rows[0]["messages"][-1]["tool_calls"]
    out = tmp_path / "run"
    report = LoraSFTTrainer().train(make_config(trainer="lora-sft", data=str(data), base=str(tiny_model),
                                                out=str(out), max_steps=2, max_length=512, merge=False))
    assert report.metrics["examples"] == 8
    card = (out / "README.md").read_text()
    assert "train.jsonl.manifest.json" in card or "train.manifest.json" in card
