"""``wilson demo`` trains, evaluates, gates and deploys through ``wilson pipeline run``.

The table it writes into ``OUT/pyproject.toml`` is generated from the demo's one set of
settings; these tests check that it resolves to exactly the training the demo's seed
figures were measured with (the former ``wilson train`` command lines, kept here as the
reference), and the checks of what the demo's table uses: ``compare``, per-format
export filters, ``[train.then]`` and ``--to``.  The demo itself runs in test_demo.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wilson_core.cli import main
from wilson_core.demo.loop import FAST, TARGET_MODULES, DemoConfig, pipeline_table
from wilson_core.pipeline.config import ConfigError, load

pytest.importorskip("wilson_train")  # lora-sft, lora-dpo and 'wilson eval'
pytest.importorskip("wilson_exporters")  # the dpo exporter


def _table(out: Path, **settings) -> Path:
    heldout = {name: out / "heldout" / f"{name}-merchants.jsonl" for name in ("seen", "new")}
    config = DemoConfig(out=out, **settings)
    path = out / "pyproject.toml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(pipeline_table(config, "smollm2-135m", heldout, ("gguf", "ollama"), True), encoding="utf-8")
    return path


def _printed_config(capsys, args: list[str]) -> dict:
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def _pipeline_config(trainer: str, settings: dict, flags: dict) -> dict:
    from wilson_core.converter import unstructure
    from wilson_core.training import build_config

    return unstructure(build_config(trainer, settings, flags))


def test_the_demo_table_trains_exactly_as_the_former_wilson_train_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here: 'wilson train' reads only its flags
    config = load(_table(tmp_path / "out", dpo=True, seed=3))
    steps, lr = 48, 2e-3
    chat = [{"role": "user", "content": "TESCO 12.50"}, {"role": "assistant", "content": "groceries"}]
    for name in ("d.jsonl", "e.jsonl"):
        (tmp_path / name).write_text(json.dumps({"messages": chat}) + "\n", encoding="utf-8")
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": chat[:1], "chosen": chat[1:], "rejected": [
        {"role": "assistant", "content": "travel"}]}) + "\n", encoding="utf-8")
    # the demo's commands before it ran through the pipeline (docs/tutorial.md's figures come from these)
    sft = _printed_config(capsys, [
        "train", "lora-sft", "--data", "d.jsonl", "--eval-data", "e.jsonl", "--base", "smollm2-135m", "--out", "o",
        "--max-steps", str(steps), "--lr", str(lr), "--target-modules", TARGET_MODULES, "--dropout", "0",
        "--logging-steps", "8", "--seed", "3", "--force", "--print-config"])
    dpo = _printed_config(capsys, [
        "train", "lora-dpo", "--data", "p.jsonl", "--base", "smollm2-135m", "--out", "o2", "--max-steps", "10", "--lr", "5e-5",
        "--target-modules", TARGET_MODULES, "--seed", "3", "--force", "--print-config"])
    assert config.trainer == "lora-sft" and config.train_data == "sft"
    assert _pipeline_config(config.trainer, config.train_settings,
                            {"data": "d.jsonl", "eval_data": "e.jsonl", "out": "o", "force": True}) == sft
    then = config.then
    assert then is not None and (then["trainer"], then["data"]) == ("lora-dpo", "dpo")
    assert _pipeline_config(then["trainer"], then["settings"],
                            {"data": "p.jsonl", "base": "smollm2-135m", "out": "o2", "force": True}) == dpo
    # --fast changes only the steps and the learning rate (and the base, built on the spot)
    fast = load(_table(tmp_path / "fast", fast=True, **FAST))
    assert fast.train_settings == {**config.train_settings, "max_steps": FAST["steps"], "lr": FAST["lr"],
                                   "seed": 0}


def test_the_demo_table_exports_evaluates_and_gates_as_the_demo_does(tmp_path):
    from wilson_core.pipeline.config import export_options

    config = load(_table(tmp_path / "out", seed=5, dpo=True))
    sft, dpo = export_options(config, "sft"), export_options(config, "dpo")
    assert (sft.call_types, sft.min_rating, sft.eval_split, sft.seed, sft.redact) == (("categorize",), 4, 0.1, 5, True)
    assert (dpo.call_types, dpo.redact) == (("categorize",), True)
    assert config.compare == {"batch_size": 48, "samples": 3, "log_likelihood": False} and config.max_tokens == 8
    assert set(config.sets) == {"seen-merchants", "new-merchants"}
    assert (config.gate.metric, config.gate.set, config.gate.margin) == ("exact-match", "all", 0.05)
    fast = load(_table(tmp_path / "fast", fast=True))
    assert fast.gate.set == "seen-merchants" and fast.then is None
    assert fast.deployers == {"gguf": {"quant": "f32", "verify": True},
                              "ollama": {"quant": "q8_0", "name": "wilson-demo-finance"}}


def test_the_dpo_export_has_no_rating_floor_and_no_eval_split(tmp_path):
    from wilson_core.exporting import ExportOptions
    from wilson_core.pipeline.config import export_options

    config = load(_table(tmp_path / "out", dpo=True))
    defaults = ExportOptions(format="dpo")
    dpo = export_options(config, "dpo")
    assert (dpo.min_rating, dpo.eval_split) == (defaults.min_rating, defaults.eval_split)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("batch-size = 48", "batch-size = 0", "[tool.wilson.pipeline.eval.compare] batch-size must be a whole number >= 1"),
    ("samples = 3", "sample = 3", "[tool.wilson.pipeline.eval.compare]: unknown key 'sample'"),
    ("[tool.wilson.pipeline.eval.evaluators.exact-match]",
     "[tool.wilson.pipeline.eval.evaluators.json-schema]\nschema = {type = \"object\"}",
     "compare scores only exact-match, token-f1, tool-call"),
    ('seen-merchants = "heldout/seen-merchants.jsonl"', 'seen-merchants = "export"', 'not "export"'),
    ('set = "all"', 'set = "elsewhere/free"', "[tool.wilson.pipeline.gate] set 'elsewhere/free' is not an eval set"),
    ("min-rating = 4", "min-ratings = 4", "[tool.wilson.pipeline.export.filters.sft]: unknown key 'min_ratings'"),
    ('trainer = "lora-dpo"', 'trainer = "lora-dpo"\nbase = "x"', "[tool.wilson.pipeline.train.then] base:"),
    ('data = "dpo"', 'data = "kto"', "[tool.wilson.pipeline.train.then] data: this trainer reads the 'kto' export"),
])
def test_bad_demo_style_tables_name_the_key_and_the_table(tmp_path, capsys, old, new, message):
    path = _table(tmp_path / "out", dpo=True)
    _edit(path, old, new)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert message in str(caught.value)
    assert main(["--db", str(tmp_path / "d.db"), "pipeline", "validate", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_to_before_from_is_refused_without_running_anything(tmp_path, capsys):
    path = _table(tmp_path / "out")
    code = main(["--db", str(tmp_path / "d.db"), "pipeline", "run", "--config", str(path), "--from", "gate",
                 "--to", "train"])
    assert code == 2
    assert "'train' comes before --from gate" in capsys.readouterr().err
    assert not (tmp_path / "out" / "pipeline-runs").exists()


def test_the_dry_run_plan_stops_at_to(tmp_path, capsys):
    path = _table(tmp_path / "out")
    assert main(["--db", str(tmp_path / "d.db"), "pipeline", "run", "--config", str(path), "--to", "train",
                 "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "[2/5] train lora-sft on smollm2-135m" in plan and "[3/5]" not in plan


def test_compared_scores_read_the_constrained_table_and_free_decoding_beside_it():
    from wilson_core.pipeline.runner import compared_scores

    def models(base: float, tuned: float, examples: int = 4) -> dict:
        return {"base": {"exact_match": base, "token_f1": base, "examples": examples, "tool_examples": 0},
                "tuned": {"exact_match": tuned, "token_f1": tuned, "examples": examples, "tool_examples": 0}}

    report = {"models": models(0.0, 0.5, 8), "subsets": {"a": {"models": models(0.0, 0.25)},
                                                       "b": {"models": models(0.0, 0.75)}},
              "constrained": {"models": models(0.125, 0.625, 8), "subsets": {"a": {"models": models(0.25, 0.5)},
                                                                            "b": {"models": models(0.0, 0.75)}}}}
    tuned, base = compared_scores(report, ["exact-match", "tool-call"])
    assert tuned[("all", "exact-match")].value == 0.625 and base[("all", "exact-match")].value == 0.125
    assert tuned[("a", "exact-match")].value == 0.5 and tuned[("a/free", "exact-match")].value == 0.25
    assert tuned[("all/free", "exact-match")].count == 8
    assert tuned[("a", "tool-call")].value is None and tuned[("a", "tool-call")].count == 0
    del report["constrained"]
    tuned, _ = compared_scores(report, ["exact-match"])
    assert set(tuned) == {("a", "exact-match"), ("b", "exact-match"), ("all", "exact-match")}


@pytest.mark.slow
def test_when_the_gate_refuses_the_demo_deploys_nothing_and_exits_with_the_reason(tmp_path, capsys, monkeypatch):
    """A gate no model can pass (a margin of 1.0): the demo trains and evaluates through the
    pipeline, then says why the gate refused, deploys nothing, skips the switch, exits 1."""
    from wilson_core.demo import loop

    pytest.importorskip("wilson_proxy")
    pytest.importorskip("openai")
    monkeypatch.setattr(loop, "gate_rule", lambda config: {"metric": "exact-match", "set": "all", "margin": 1.0})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "demo"
    code = main(["demo", "--fast", "--runs", "1", "--target", "gguf", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.err[-2000:]
    assert "the promotion gate refused the tuned model, so nothing was deployed: refused: exact-match on all" in \
        captured.err and "needs at least +1.000" in captured.err and "Traceback" not in captured.err
    assert "[7/8]" not in captured.out and "[8/8]" not in captured.out
    assert 'margin = 1.0' in (out / "pyproject.toml").read_text()
    summary = json.loads((out / "demo-summary.json").read_text())
    assert not summary["pipeline"]["gate"]["promote"] and summary["pipeline"]["live"] is None
    assert summary["deploy"] == {} and "switch" not in summary
    assert "the promotion gate refused" in summary["skipped"][0]
    assert "  - gate REFUSED: refused: exact-match on all" in (out / "summary.md").read_text()
    assert (out / "eval.json").is_file() and (out / "model" / "merged").is_dir() and not (out / "deploy").exists()
