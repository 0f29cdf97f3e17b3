"""Transformers.js's Node side (``node/run.mjs`` + @huggingface/transformers), shipped in the wheel.

Its pinned Node packages are installed on first use into ``$WILSON_CACHE_DIR``
(:mod:`wilson_core.noderuntime`); ``wilson setup`` does it ahead of time.
``$WILSON_ONNX_NODE_DIR`` names a ready folder instead.  onnxruntime-node's
install script (a CUDA download) is skipped: its CPU binaries ship in the package.
"""

from __future__ import annotations

from pathlib import Path

from wilson_core.hookspecs import hookimpl
from wilson_core.noderuntime import NodePackage

RUNTIME = NodePackage(
    name="wilson-onnx",
    source=Path(__file__).resolve().parent / "node",
    marker="@huggingface/transformers",
    purpose="Transformers.js (running and verifying ONNX models)",
    env_var="WILSON_ONNX_NODE_DIR",
    npm_env={"ONNXRUNTIME_NODE_INSTALL": "skip", "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"},
)


@hookimpl
def wilson_node_packages() -> list[NodePackage]:
    return [RUNTIME]
