"""``wilson pipeline run`` end to end on a tiny model, configured only by a pyproject.toml.

The table names a third-party exporter (``alpaca``, from wilson-example-exporter) and a
third-party evaluator (``label-set``, from wilson-example-evaluator), each installed from
its own package.  The app's task is small enough for a tiny Llama built here to learn
its answer format in a few dozen LoRA steps: name the group of an item (fruit, metal).

Round 1 is promoted over the base; a run killed during training resumes from its last
checkpoint and gives the same registry entry; round 2, trained on labels a reviewer
shuffled, is refused and the live model stays.  Lineage is checked against the export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wilson_core import annotations, open_store
from wilson_core.cli import main
from wilson_core.store.registry import Registry

pytestmark = pytest.mark.slow
pytest.importorskip("wilson_train")
pytest.importorskip("wilson_example_exporter")
pytest.importorskip("wilson_example_evaluator")

GROUPS = {"fruit": ["apple", "banana"], "metal": ["iron", "zinc"]}
SYSTEM = "Name the group of the item: fruit or metal."
REPEATS = 15  # calls per item
TRAIN = {"max-steps": 40, "lr": 0.01}


def truth(item: str) -> str:
    return next(group for group, items in GROUPS.items() if item in items)


def messages(item: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Item: {item}"}]


def pyproject(db: Path, runs: str, save_steps: int = 10) -> str:
    return textwrap.dedent(f"""
        [project]
        name = "item-groups"
        version = "0.1.0"

        [tool.wilson.pipeline]
        db = "{db}"
        runs = "{runs}"

        [tool.wilson.pipeline.export]
        formats = ["sft", "alpaca"]
        call-type = "classify"
        min-rating = 4
        eval-split = 0.2

        [tool.wilson.pipeline.train]
        trainer = "lora-sft"
        base = "../base"
        max-steps = {TRAIN["max-steps"]}
        lr = {TRAIN["lr"]}
        dropout = 0.0
        target-modules = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
        logging-steps = 10
        save-steps = {save_steps}
        batch-size = 8

        [tool.wilson.pipeline.eval]
        max-tokens = 6
        sets = {{ heldout = "export", fixed = "../fixed.jsonl" }}
        ab-review = 4

        [tool.wilson.pipeline.eval.evaluators.exact-match]
        [tool.wilson.pipeline.eval.evaluators.label-set]
        labels = ["fruit", "metal"]

        [tool.wilson.pipeline.gate]
        metric = "exact-match"
        set = "fixed"
        margin = 0.2
        tolerance = 0.1
    """)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """The app's folder: captured traffic rated by a reviewer, a fixed held-out file, a tiny base."""
    from wilson_train.tiny import build_tiny_model

    from wilson_core.facade import LLM

    root = tmp_path_factory.mktemp("pipeline")
    db = root / "data.db"
    llm = LLM("scripted:teacher", db=str(db), script=lambda m, tools: truth(m[-1]["content"].split(": ")[1]))
    for _ in range(REPEATS):
        for items in GROUPS.values():
            for item in items:
                llm.chat(messages(item), call_type="classify")
    llm.close()
    store = open_store(db)
    for interaction in store.iter_interactions("i.status = 'ok'"):
        annotations.rate(store, interaction.id, 5)
    store.close()
    with open(root / "fixed.jsonl", "w", encoding="utf-8") as handle:
        for items in GROUPS.values():
            for item in items:
                handle.write(json.dumps({"messages": [*messages(item), {"role": "assistant", "content": truth(item)}]})
                             + "\n")
    build_tiny_model(root / "base", arch="llama", pretrain_steps=20)
    (root / "app").mkdir()
    (root / "app" / "pyproject.toml").write_text(pyproject(db, "runs"), encoding="utf-8")
    return root


def config(app: Path) -> str:
    return str(app / "app" / "pyproject.toml")


def latest(runs: Path) -> Path:
    return sorted(p for p in runs.iterdir() if (p / "state.json").exists())[-1]


def test_dry_run_prints_the_plan_with_each_driver_and_its_package(app, capsys):
    assert main(["pipeline", "run", "--config", config(app), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "wilson.exporters   alpaca           wilson-example-exporter" in out
    assert "wilson.evaluators  label-set        wilson-example-evaluator" in out
    assert "Reference: the base model" in out
    assert not (app / "app" / "runs").exists()


def test_round_one_is_promoted_over_the_base_and_its_lineage_is_the_export(app, capsys):
    assert main(["pipeline", "run", "--config", config(app)]) == 0
    out = capsys.readouterr().out
    run = latest(app / "app" / "runs")
    gate = json.loads((run / "gate.json").read_text())
    assert gate["promote"], gate["reason"]
    assert "PROMOTED" in out and gate["reason"] in out
    # every artefact under the run folder, the third-party exporter's file among them
    for name in ("export/sft.jsonl", "export/sft.eval.jsonl", "export/alpaca.jsonl", "export/lineage.jsonl",
                 "train/merged/config.json", "eval/answers.jsonl", "eval/scores.json", "summary.md"):
        assert (run / name).exists(), name
    assert json.loads((run / "export" / "alpaca.jsonl").read_text().splitlines()[0]).keys() >= {"instruction", "output"}
    scores = json.loads((run / "eval" / "scores.json").read_text())
    by_key = {(r["set"], r["evaluator"]): r for r in scores["candidate"]}
    assert by_key[("fixed", "label-set")]["count"] == 4  # the third-party evaluator scored every case
    assert by_key[("fixed", "label-set")]["value"] == 1.0  # it answers with a group, as taught
    assert by_key[("fixed", "exact-match")]["value"] >= 0.5

    registry = Registry(open_store(app / "data.db"))
    [entry] = registry.models()
    assert entry.live and entry.status == "live" and registry.live() == entry.id
    # lineage: exactly the interactions of the export, with the label versions that counted
    manifest = json.loads((run / "export" / "sft.jsonl.manifest.json").read_text())
    listed = registry.examples(entry.id)
    for split in ("train", "eval"):
        assert sorted(r["interaction_id"] for r in listed if r["split"] == split) == sorted(
            manifest["interaction_ids"][split])
    labels = registry.current_labels([r["interaction_id"] for r in listed])
    assert all((r["annotation_id"], r["label_version"]) == labels[r["interaction_id"]] for r in listed)
    assert main(["--db", str(app / "data.db"), "models", "show", entry.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["examples"]) == manifest["counts"]["total"] and shown["live"]


def test_no_new_labels_means_nothing_to_do(app, capsys):
    before = sorted((app / "app" / "runs").iterdir())
    assert main(["pipeline", "run", "--config", config(app), "--if-new-labels", "1"]) == 0
    assert "0 new label(s) since the last run" in capsys.readouterr().out
    assert sorted((app / "app" / "runs").iterdir()) == before


def test_round_one_on_postgresql_keeps_its_registry_there(app, pg_url, capsys):
    """The same app's data copied into PostgreSQL: the pipeline runs on it, and the registry
    (model, lineage, scores, live model) is in that database, not in the SQLite file."""
    assert main(["db", "copy", str(app / "data.db"), pg_url]) == 0
    other = app / "pg"
    other.mkdir()
    (other / "pyproject.toml").write_text(pyproject(pg_url, "runs"), encoding="utf-8")  # type: ignore[arg-type]
    capsys.readouterr()
    assert main(["pipeline", "run", "--config", str(other / "pyproject.toml")]) == 0
    assert "PROMOTED" in capsys.readouterr().out
    run = latest(other / "runs")
    store = open_store(pg_url)
    try:
        registry = Registry(store)
        [entry] = registry.models()
        assert registry.live() == entry.id and entry.status == "live"
        assert entry.id == json.loads((run / "state.json").read_text())["stages"]["train"]["model_id"]
        manifest = json.loads((run / "export" / "sft.jsonl.manifest.json").read_text())
        assert sorted(r["interaction_id"] for r in registry.examples(entry.id, "train")) == sorted(
            manifest["interaction_ids"]["train"])
        assert {(s["eval_set"], s["evaluator"]) for s in entry.scores} >= {("fixed", "exact-match")}
        assert registry.live_provider() == f"transformers:{run / 'train'}"
    finally:
        store.close()
    # the SQLite file's registry is untouched: one model, round 1's
    assert len(Registry(open_store(app / "data.db")).models()) == 1


#: ``wilson`` whose training stops for good right after its first checkpoint is saved (and says so by
#: creating a file): the test's hard kill then always lands mid-training, however fast the machine.
_HANG_AFTER_FIRST_CHECKPOINT = """
import pathlib, sys, time
from trl import SFTTrainer
marker = pathlib.Path(sys.argv.pop(1))
original = SFTTrainer._save_checkpoint
def save_then_hang(self, *args, **kwargs):
    original(self, *args, **kwargs)
    marker.touch()
    time.sleep(3600)
SFTTrainer._save_checkpoint = save_then_hang
from wilson_core.cli import main
sys.exit(main())
"""


def test_a_run_killed_during_training_resumes_from_its_checkpoint_and_gives_the_same_entry(app, capsys):
    other = app / "resume"
    other.mkdir()
    (other / "pyproject.toml").write_text(pyproject(app / "data.db", "runs", save_steps=5), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    saved = other / "checkpoint-saved"
    process = subprocess.Popen([sys.executable, "-c", _HANG_AFTER_FIRST_CHECKPOINT, str(saved), "pipeline", "run",
                                "--config", str(other / "pyproject.toml")], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    checkpoint = None
    try:
        while checkpoint is None:
            assert process.poll() is None, "the pipeline ended before a checkpoint was written"
            assert time.monotonic() < deadline, "no checkpoint after 15 minutes"
            found = sorted((other / "runs").glob("*/train/checkpoints/checkpoint-*/trainer_state.json"))
            checkpoint = found[0].parent if found and saved.exists() else None
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a hard kill: no chance to save anything more
        process.wait()
    run = checkpoint.parents[2]
    assert not (run / "train" / "merged").exists()
    assert main(["pipeline", "run", "--config", str(other / "pyproject.toml"), "--from", "train"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["stages"]["train"]["resumed_from"].startswith("checkpoint-")
    assert state["stages"]["train"]["metrics"]["steps"] == TRAIN["max-steps"]
    # the same export and settings: the model registered in round 1, not a new entry
    registry = Registry(open_store(app / "data.db"))
    [entry] = registry.models()
    assert state["stages"]["train"]["model_id"] == entry.id and not state["stages"]["train"]["registered"]
    capsys.readouterr()


def test_round_two_on_shuffled_labels_is_refused_and_the_live_model_stays(app, capsys):
    store = open_store(app / "data.db")
    registry = Registry(store)
    live = registry.live()
    order = list(GROUPS)
    wrong = {group: order[(order.index(group) + 1) % len(order)] for group in order}
    corrected = 0
    for interaction in store.iter_interactions("i.call_type = 'classify'"):
        annotations.correct(store, interaction.id, wrong[truth(interaction.user_prompt.split(": ")[1])])
        corrected += 1
    assert main(["pipeline", "run", "--config", config(app), "--if-new-labels", str(corrected)]) == 0
    out = capsys.readouterr().out
    run = latest(app / "app" / "runs")
    gate = json.loads((run / "gate.json").read_text())
    assert not gate["promote"] and gate["reference"] == f"live {live}"
    assert gate["blocking"] in ("exact-match", "label-set")
    assert gate["candidate_value"] <= gate["reference_value"] or gate["regressions"]
    assert "REFUSED" in out and f"blocking metric: {gate['blocking']}" in out and f"live model stays: {live}" in out
    assert registry.live() == live
    refused = [e for e in registry.models() if e.id != live]
    assert len(refused) == 1 and refused[0].status == "refused"
    assert json.loads((run / "state.json").read_text())["stages"]["deploy"]["skipped"]
    # its lineage records the corrected labels' versions, not round 1's
    versions = {r["label_version"] for r in registry.examples(refused[0].id)}
    assert versions == {2}


def test_compare_makes_wilson_eval_the_evaluate_stage_run_stage_by_stage(app, capsys):
    """``[eval] compare`` (what ``wilson demo`` uses): ``wilson eval`` is the evaluate stage and
    its scores are the gate's.  Run stage by stage with ``--to`` and ``--from``, against the
    live model, a candidate trained on the shuffled labels is refused and nothing is deployed."""
    other = app / "compare"
    other.mkdir()
    text = pyproject(app / "data.db", "runs")
    for old, new in (('sets = { heldout = "export", fixed = "../fixed.jsonl" }\nab-review = 4\n',
                      'sets = { fixed = "../fixed.jsonl" }\n'
                      'compare = { batch-size = 4, samples = 2, log-likelihood = false }\n'),
                     ('[tool.wilson.pipeline.eval.evaluators.label-set]\nlabels = ["fruit", "metal"]\n', "")):
        assert old in text
        text = text.replace(old, new)
    path = other / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    registry = Registry(open_store(app / "data.db"))
    live = registry.live()
    assert live is not None

    assert main(["pipeline", "run", "--config", str(path), "--to", "train"]) == 0
    run = latest(other / "runs")
    assert set(json.loads((run / "state.json").read_text())["stages"]) == {"export", "train"}
    assert not (run / "eval").exists() and not (run / "gate.json").exists()

    capsys.readouterr()
    assert main(["pipeline", "run", "--config", str(path), "--from", "evaluate", "--to", "gate"]) == 0
    out = capsys.readouterr().out
    assert " eval --data fixed=" in out and "REFUSED" in out
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert report["base"] == str(Path(registry.get(live).path) / "merged") and report["tuned"] == str(run / "train")
    assert report["settings"]["batch_size"] == 4 and len(report["samples"]) <= 2
    scores = json.loads((run / "eval" / "scores.json").read_text())
    mine = {(r["set"], r["evaluator"]): r for r in scores["candidate"]}
    theirs = {(r["set"], r["evaluator"]): r for r in scores["reference_scores"]}
    assert set(mine) == {("fixed", "exact-match"), ("all", "exact-match")}
    assert mine[("fixed", "exact-match")]["value"] == report["subsets"]["fixed"]["models"]["tuned"]["exact_match"]
    assert theirs[("fixed", "exact-match")]["value"] == report["subsets"]["fixed"]["models"]["base"]["exact_match"]
    assert mine[("fixed", "exact-match")]["count"] == 4
    gate = json.loads((run / "gate.json").read_text())
    assert not gate["promote"] and gate["reference"] == f"live {live}" and registry.live() == live
    candidate = registry.get(gate["model_id"])
    assert {(s["eval_set"], s["evaluator"]) for s in candidate.scores} >= {("fixed", "exact-match")}

    assert main(["pipeline", "run", "--config", str(path), "--from", "deploy"]) == 0
    assert json.loads((run / "state.json").read_text())["stages"]["deploy"]["skipped"]
    assert registry.live() == live
