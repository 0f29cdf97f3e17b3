"""Running ``node/run.mjs`` (Transformers.js in Node 20) as a subprocess.

The Node side ships inside this package (``wilson_onnx/node``: ``run.mjs``,
``package.json``, ``package-lock.json``).  Its pinned Node packages are
installed on first use into ``$WILSON_CACHE_DIR`` with ``npm ci --ignore-scripts``
(:mod:`wilson_onnx.node_runtime`; ``wilson setup`` does it ahead of time).
``$WILSON_ONNX_NODE_DIR`` names a ready folder instead.
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
    "ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip "
    "npm ci --ignore-scripts --prefix {folder}"
)


def node_folder() -> Path:
    """The folder ``run.mjs`` runs in (its Node packages may not be installed yet)."""
    from .node_runtime import RUNTIME

    return RUNTIME.folder()


def node_executable() -> str | None:
    return shutil.which("node")


def node_ready() -> str | None:
    """``None`` when Transformers.js can run (now, or after installing it on first use), else why not."""
    from .node_runtime import RUNTIME

    if node_executable() is None:
        return "node is not installed (Node 20 or later is needed)"
    folder = node_folder()
    overridden = bool(os.environ.get("WILSON_ONNX_NODE_DIR"))
    if overridden and not (folder / "run.mjs").exists():
        return f"{folder}/run.mjs not found (set WILSON_ONNX_NODE_DIR to the plugin's node folder)"
    if overridden and not RUNTIME.installed_in(folder):
        return "@huggingface/transformers is not installed; run: " + INSTALL_HINT.format(folder=folder)
    return RUNTIME.problem()


def _ensure() -> Path:
    from wilson_core.noderuntime import NodeRuntimeError, ensure

    from .node_runtime import RUNTIME

    problem = node_ready()
    if problem:
        raise DeployError(f"cannot run Transformers.js: {problem}")
    try:
        return ensure(RUNTIME)
    except NodeRuntimeError as exc:
        raise DeployError(f"cannot run Transformers.js: {exc}") from None


def run_transformersjs(job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``job`` (see ``run.mjs``) in Transformers.js and return its result."""
    folder = _ensure()
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
