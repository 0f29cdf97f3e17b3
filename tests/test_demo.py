"""The README's main job: ``wilson demo`` takes the finance agent around the whole loop.

Run here on a tiny locally built base (the default base, SmolLM2-135M, is exercised
by the plugins' own slow tests); every stage is the real one.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

needs = ("wilson_train", "wilson_gguf", "wilson_onnx", "wilson_exporters")


def _wilson(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"},
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    for module in needs:
        pytest.importorskip(module)
    root = tmp_path_factory.mktemp("demo")
    base = root / "tiny-base"
    built = _wilson("model", "init", "--arch", "llama", "--out", str(base), "--pretrain-steps", "60", cwd=root)
    assert built.returncode == 0, built.stderr[-3000:]
    out = root / "out"
    result = _wilson(
        "demo", "--out", str(out), "--base", str(base), "--steps", "4", "--count", "40",
        "--target", "gguf", "--target", "transformersjs", cwd=root,
    )
    return out, result


def test_the_demo_runs_every_stage_and_exits_zero(demo_run):
    out, result = demo_run
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    for stage in ("Capture", "Annotate", "Export", "Train", "Evaluate", "Deploy", "Switch"):
        assert stage in result.stdout
    assert "The loop is closed" in result.stdout


def test_the_demo_export_is_redacted_and_traced_by_its_manifest(demo_run):
    out, _ = demo_run
    lines = (out / "export" / "sft.jsonl").read_text().splitlines()
    assert lines, "the SFT export is empty"
    text = "\n".join(lines) + (out / "export" / "sft.eval.jsonl").read_text()
    assert "4111 1111 1111 1111" not in text and "jane.doe@example.com" not in text
    manifest = json.loads((out / "export" / "sft.jsonl.manifest.json").read_text())
    assert json.dumps(manifest).count("redact") >= 1


def test_the_demo_trains_evaluates_and_deploys_verified_gguf_and_onnx(demo_run):
    out, _ = demo_run
    assert (out / "model" / "adapter").is_dir() and (out / "model" / "merged").is_dir()
    assert json.loads((out / "eval.json").read_text())
    assert list((out / "deploy" / "gguf").glob("*.gguf"))
    assert (out / "deploy" / "transformersjs" / "onnx" / "model.onnx").is_file()


def test_after_the_switch_the_local_model_answers_and_is_captured(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    assert len(summary["switch"]) == 5
    with sqlite3.connect(out / "data.db") as conn:
        local = conn.execute("SELECT count(*) FROM interactions WHERE provider = 'llamacpp'").fetchone()[0]
        teacher = conn.execute("SELECT count(*) FROM interactions WHERE provider = 'scripted'").fetchone()[0]
    assert local == 5
    assert teacher >= 40
