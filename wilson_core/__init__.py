"""Wilson: turn an app's own LLM traffic into a better, cheaper, private local model.

The names below are imported lazily so that ``import wilson_core`` (and the
``wilson`` CLI) stays fast.
"""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

del annotations  # the __future__ name would hide the wilson_core.annotations module

__version__ = _version("wilson-core")  # one source: the distribution's metadata (pyproject.toml)

__all__ = [
    "LLM",
    "Annotation",
    "Interaction",
    "Reply",
    "Run",
    "Store",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolResult",
    "__version__",
    "current_run",
    "hookimpl",
    "open_store",
    "record_call",
    "run",
]

if TYPE_CHECKING:
    from .capture import current_run, record_call, run
    from .facade import LLM
    from .records import Annotation, Interaction, Reply, Run, ToolCall, ToolResult
    from .store import Store, open_store
    from .streams import TextDelta, ToolCallDelta

_LAZY = {
    "LLM": "facade",
    "Annotation": "records",
    "Interaction": "records",
    "Reply": "records",
    "Run": "records",
    "ToolCall": "records",
    "ToolResult": "records",
    "Store": "store",
    "open_store": "store",
    "run": "capture",
    "TextDelta": "streams",
    "ToolCallDelta": "streams",
    "current_run": "capture",
    "record_call": "capture",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wilson_core' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
