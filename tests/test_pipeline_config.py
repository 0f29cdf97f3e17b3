"""``[tool.wilson.pipeline]`` is checked before anything heavy: names, keys, types, each named."""

from __future__ import annotations

import textwrap

import pytest

from wilson_core.cli import main
from wilson_core.pipeline.config import ConfigError, load

pytest.importorskip("wilson_train")  # the lora-sft trainer named below

GOOD = """
[tool.wilson.pipeline]
runs = "runs"

[tool.wilson.pipeline.export]
formats = ["sft", "alpaca"]
call-type = "categorize"
min-rating = 4
eval-split = 0.2

[tool.wilson.pipeline.train]
trainer = "lora-sft"
base = "base"
max-steps = 5
lr = 0.003

[tool.wilson.pipeline.eval]
max-tokens = 8
sets = { heldout = "export", fixed = "fixed.jsonl" }

[tool.wilson.pipeline.eval.evaluators.exact-match]
[tool.wilson.pipeline.eval.evaluators.label-set]
labels = ["fruit", "vegetable"]

[tool.wilson.pipeline.gate]
metric = "exact-match"
set = "fixed"
margin = 0.1
"""


def write(tmp_path, text):
    path = tmp_path / "pyproject.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_good_table_resolves_paths_and_options(tmp_path):
    (tmp_path / "base").mkdir()
    config = load(write(tmp_path, GOOD))
    assert config.formats == ("sft", "alpaca") and config.trainer == "lora-sft" and config.train_data == "sft"
    assert config.base == str((tmp_path / "base").resolve())
    assert config.sets == {"heldout": "export", "fixed": str(tmp_path / "fixed.jsonl")}
    assert config.evaluators == {"exact-match": {}, "label-set": {"labels": ["fruit", "vegetable"]}}
    assert config.export_filters == {"call_type": "categorize", "min_rating": 4, "eval_split": 0.2}
    assert (config.gate.metric, config.gate.set, config.gate.margin) == ("exact-match", "fixed", 0.1)
    assert config.runs == tmp_path / "runs"


@pytest.mark.parametrize(("old", "new", "message"), [
    ('formats = ["sft", "alpaca"]', 'formats = ["sft", "alpacka"]',
     r"\[tool.wilson.pipeline.export\] formats: no wilson.exporters driver named 'alpacka'; installed: .*alpaca"),
    ('trainer = "lora-sft"', 'trainer = "lora-sfd"',
     r"\[tool.wilson.pipeline.train\] trainer: no wilson.trainers driver named 'lora-sfd'; installed: .*lora-sft"),
    ("[tool.wilson.pipeline.eval.evaluators.exact-match]", "[tool.wilson.pipeline.eval.evaluators.exact-matsh]",
     r"evaluator: no wilson.evaluators driver named 'exact-matsh'; installed: .*exact-match"),
    ('labels = ["fruit", "vegetable"]', 'labels = "fruit"',
     r"\[tool.wilson.pipeline.eval.evaluators.label-set\]: option 'labels' must be list"),
    ('labels = ["fruit", "vegetable"]', 'lables = ["fruit"]',
     r"\[tool.wilson.pipeline.eval.evaluators.label-set\]: unknown option 'lables'"),
    ("max-steps = 5", "max-stepz = 5", r"\[tool.wilson.pipeline.train\]: unknown key 'max_stepz'"),
    ("lr = 0.003", 'lr = "fast"', r"\[tool.wilson.pipeline.train\]: bad training settings: .*lr"),
    ("min-rating = 4", "min-rating = 9", r"\[tool.wilson.pipeline.export\] \(sft\): --min-rating must be between 1 and 5"),
    ("call-type =", "call-typo =", r"\[tool.wilson.pipeline.export\]: unknown key 'call_typo'"),
    ('metric = "exact-match"', 'metric = "token-f1"',
     r"\[tool.wilson.pipeline.gate\] metric 'token-f1' is not one of the evaluators configured"),
    ('set = "fixed"', 'set = "fixd"', r"\[tool.wilson.pipeline.gate\] set 'fixd' is not an eval set"),
    ("margin = 0.1", "margin = -1", r"\[tool.wilson.pipeline.gate\] margin must be a number >= 0"),
    ('runs = "runs"', 'runs = "runs"\nsteps = 3', r"\[tool.wilson.pipeline\]: unknown key 'steps'"),
    ("eval-split = 0.2", "", r"\"export\" needs eval-split"),
])
def test_bad_tables_name_the_table_and_the_key(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, GOOD.replace(old, new)))


def test_unknown_deployer_lists_the_installed_ones(tmp_path):
    text = GOOD + '\n[tool.wilson.pipeline.deploy.ggof]\nquant = "f32"\n'
    with pytest.raises(ConfigError, match=r"deploy\] deployer: no wilson.deployers driver named 'ggof'; installed: "):
        load(write(tmp_path, text))
    text = GOOD + '\n[tool.wilson.pipeline.deploy.gguf]\nquantize = "f32"\n'
    with pytest.raises(ConfigError, match=r"\[tool.wilson.pipeline.deploy.gguf\]: unknown key 'quantize'"):
        load(write(tmp_path, text))


def test_the_cli_exits_non_zero_with_the_message_and_no_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD.replace('trainer = "lora-sft"', 'trainer = "nope"'))
    assert main(["--db", str(tmp_path / "d.db"), "pipeline", "run"]) == 1
    err = capsys.readouterr().err
    assert "no wilson.trainers driver named 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran
    assert main(["pipeline", "validate", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "no " in capsys.readouterr().err
    write(tmp_path, "[project]\nname = 'x'\n")
    assert main(["pipeline", "validate"]) == 1
    assert "has no [tool.wilson.pipeline] table" in capsys.readouterr().err
    write(tmp_path, "[tool.wilson.pipeline\n")
    assert main(["pipeline", "validate"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_from_a_stage_needs_an_earlier_run_and_too_few_labels_do_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "base").mkdir()
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    db = str(tmp_path / "d.db")
    assert main(["--db", db, "pipeline", "run", "--from", "train"]) == 1
    assert "there is no earlier run in" in capsys.readouterr().err
    assert main(["--db", db, "pipeline", "run", "--if-new-labels", "5"]) == 0
    assert "0 new label(s) since the start; --if-new-labels 5: nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_the_demo_writes_a_table_that_validates(tmp_path):
    from wilson_core.pipeline import demo

    heldout = demo.write_heldout(tmp_path / "heldout", 4, 0, {"TESCO"})
    (tmp_path / "base").mkdir()
    write(tmp_path, demo.pyproject("base", heldout, 10, 0.003, 0, ("gguf",)))
    config = load(tmp_path / "pyproject.toml")
    assert config.sets == {"heldout": "export", "seen": str(heldout["seen"]), "new": str(heldout["new"])}
    assert config.deployers == {"gguf": {"quant": "f32"}} and config.gate.metric == "exact-match"
