"""The llama.cpp runner's Node side (``node/runner.mjs`` + node-llama-cpp), shipped in the wheel.

Its pinned Node packages are installed on first use into ``$WILSON_CACHE_DIR``
(:mod:`wilson_core.noderuntime`); ``wilson setup`` does it ahead of time.
``$WILSON_GGUF_RUNNER_DIR`` names a ready folder instead.
"""

from __future__ import annotations

from pathlib import Path

from wilson_core.hookspecs import hookimpl
from wilson_core.noderuntime import NodePackage

RUNTIME = NodePackage(
    name="wilson-gguf",
    source=Path(__file__).resolve().parent / "node",
    marker="node-llama-cpp",
    purpose="llama.cpp (running and verifying GGUF models)",
    env_var="WILSON_GGUF_RUNNER_DIR",
)


@hookimpl
def wilson_node_packages() -> list[NodePackage]:
    return [RUNTIME]
