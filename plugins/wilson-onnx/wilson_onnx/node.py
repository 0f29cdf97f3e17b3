"""Running ``node/run.mjs`` (Transformers.js in Node 20) as a subprocess.

The Node package lives beside this Python package, in ``plugins/wilson-onnx/node``
(``package.json`` + ``package-lock.json``), installed with::

    ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --prefix plugins/wilson-onnx/node

``$WILSON_ONNX_NODE_DIR`` points elsewhere when the plugin is installed without its
source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployError

INSTALL_HINT = (
    "ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --prefix {folder}"
)


def node_folder() -> Path:
    """The folder holding ``run.mjs`` and ``package.json``."""
    configured = os.environ.get("WILSON_ONNX_NODE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "node"


def node_executable() -> str | None:
    return shutil.which("node")


def node_ready() -> str | None:
    """``None`` when Transformers.js can run, else the reason it cannot."""
    folder = node_folder()
    if node_executable() is None:
        return "node is not installed (Node 20 or later is needed)"
    if not (folder / "run.mjs").exists():
        return f"{folder}/run.mjs not found (set WILSON_ONNX_NODE_DIR to the plugin's node folder)"
    if not (folder / "node_modules" / "@huggingface" / "transformers").is_dir():
        return "@huggingface/transformers is not installed; run: " + INSTALL_HINT.format(folder=folder)
    return None


def run_transformersjs(job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``job`` (see ``run.mjs``) in Transformers.js and return its result."""
    problem = node_ready()
    if problem:
        raise DeployError(f"cannot run Transformers.js: {problem}")
    folder = node_folder()
    with tempfile.TemporaryDirectory() as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        try:
            done = subprocess.run(
                [node_executable() or "node", str(folder / "run.mjs"), str(job_path), str(result_path)],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
            )
        except subprocess.TimeoutExpired:
            raise DeployError(f"Transformers.js did not finish within {timeout:.0f} s") from None
        if done.returncode != 0 or not result_path.exists():
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise DeployError(f"Transformers.js failed (exit {done.returncode}): {tail}")
        return json.loads(result_path.read_text(encoding="utf-8"))
