"""The export's held-out cases a reference model was trained on (an earlier round's split) are left out."""

from __future__ import annotations

import json

import click

from wilson_core import open_store
from wilson_core.interfaces import EvalCase
from wilson_core.pipeline.runner import Run, write_state
from wilson_core.store.registry import Registry


def test_cases_the_live_model_was_trained_on_are_left_out(tmp_path):
    store = open_store(tmp_path / "data.db")
    registry = Registry(store)
    registry.register("m-live", base="b", trainer="t", settings={}, export_hash="h", manifest=None, counts={},
                      path=None, pipeline_run="001", examples=[("i1", "train", None, None), ("i3", "eval", None, None)])
    folder = tmp_path / "runs" / "002"
    (folder / "export").mkdir(parents=True)
    sft = folder / "export" / "sft.jsonl"
    manifest = {"options": {"granularity": "interaction"}, "interaction_ids": {"train": ["i9"], "eval": ["i1", "i2", "i3"]}}
    (folder / "export" / "sft.jsonl.manifest.json").write_text(json.dumps(manifest))
    write_state(folder, {"run": "002", "stages": {"export": {"files": {"sft": {"path": str(sft)}}}}})
    run = Run(None, folder, store, click.echo)  # type: ignore[arg-type]
    cases = [EvalCase(id=f"sft.eval.jsonl:{n}", messages=[], tools=None, reference={}) for n in (1, 2, 3)]
    kept, dropped = run._unseen_by("m-live", cases, folder / "export" / "sft.eval.jsonl")
    assert [c.id for c in kept] == ["sft.eval.jsonl:2", "sft.eval.jsonl:3"] and dropped == 1
    assert run._unseen_by("base:tiny", cases, sft) == (cases, 0)  # the base was trained on none of them
    manifest["options"]["granularity"] = "run"  # lines of whole runs: no mapping, nothing left out
    (folder / "export" / "sft.jsonl.manifest.json").write_text(json.dumps(manifest))
    assert run._unseen_by("m-live", cases, sft) == (cases, 0)
