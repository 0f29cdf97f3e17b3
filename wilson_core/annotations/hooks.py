"""The hooks of the annotation API: the built-in sources it declares, ``wilson_annotation_added``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wilson_core.hookspecs import hookimpl
from wilson_core.records import Annotation

if TYPE_CHECKING:
    from wilson_core.store import Store


# --- the built-in annotation sources (declared on the wilson_annotation_sources hook) ---


@hookimpl
def wilson_annotation_sources() -> list[dict[str, str]]:
    """The sources wilson-core itself provides (the dashboard plugin declares its own)."""
    return [
        {"name": "cli", "kind": "human", "description": "wilson annotate rate/pair/correct/tag/note/undo"},
        {"name": "import", "kind": "import", "description": "wilson annotate import FILE (CSV or JSONL)"},
        {"name": "judge", "kind": "judge", "description": "wilson annotate judge: an LLM scores answers "
         "with a weighted rubric; its labels are proposals to accept or reject"},
        {"name": "harvest-pairs", "kind": "rule", "description": "pairs from answers to one context "
         "whose ratings differ by 2+ stars"},
    ]


def _added(store: Store, written: Sequence[Annotation]) -> None:
    """Fire ``wilson_annotation_added`` for each written version; a failing plugin only warns."""
    if not written:
        return
    from wilson_core import plugins

    caller = plugins.hook().wilson_annotation_added
    impls = caller.get_hookimpls()
    if not impls:
        return
    kwargs = {"db_path": str(store.path)}
    for annotation in written:
        kwargs["annotation"] = annotation
        for impl in impls:
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                logging.getLogger("wilson.annotations").warning(
                    "wilson_annotation_added hook of %r failed: %s: %s",
                    impl.plugin_name, type(exc).__name__, exc,
                )
