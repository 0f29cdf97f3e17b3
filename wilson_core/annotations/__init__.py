"""The annotation API: ratings, preferences, pairs, corrections, tags, notes, undo.

Every write appends a new *version* of a label; nothing is overwritten.  A
label stream is keyed by (interaction, annotator, source) and each row holds
the full merged state of its version: a field left as ``None`` is carried over
from the previous version, so setting a star never wipes the notes.  Undo marks
the latest version ``undone_at`` and the previous one becomes current again
(view ``current_annotations``).

Refusals (bad star value, unknown id, interaction of a deleted run, pair of
two different contexts) raise :class:`~wilson_core.errors.AnnotationRefused`
or :class:`~wilson_core.errors.NotFound` before anything is written.  After
each written version the ``wilson_annotation_added`` hook is called.

    from wilson_core import open_store, annotations
    store = open_store("data.db")
    annotations.annotate(store, interaction_id, rating=5, add_tags=["good-tool-use"])
    annotations.pair(store, chosen_id, rejected_id)
    annotations.correct(store, interaction_id, "The better answer")
    annotations.undo(store, interaction_id)

The API lives in small modules, re-exported here: :mod:`.labels` (writing and
undo), :mod:`.reading`, :mod:`.pairs`, :mod:`.proposals` (judge labels),
:mod:`.regeneration`, :mod:`.changes` (validation), :mod:`.rows` (records),
:mod:`.versions` (the append-only versions) and :mod:`.hooks`; the sources
that label in bulk are :mod:`.importing` (CSV / JSONL files) and :mod:`.judge`
(an LLM proposes labels).  Every SQL statement they run is in
:mod:`wilson_core.store.labels`; the label that counts is the store's view
``effective_labels``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.hookspecs import hookimpl as hookimpl

# The plugin manager imports this package (entry point ``annotations``) on every
# command, ``wilson --help`` included: only the hook implementation is imported
# here; the API below is imported on first use (PEP 562).
from .hooks import wilson_annotation_sources

#: public name -> the submodule that defines it.
_LAZY = {
    "ANNOTATION_SOURCES": "wilson_core.records",
    "PREFERENCES": "wilson_core.records",
    "Annotation": "wilson_core.records",
    **dict.fromkeys(
        ("CLEARABLE", "HUMAN_SOURCES", "MAX_TAG_LENGTH", "STATUSES", "check_rating", "check_tags"),
        ".changes",
    ),
    **dict.fromkeys(("annotate", "annotate_many", "correct", "rate", "undo"), ".labels"),
    **dict.fromkeys(("get_pair", "harvest_pairs", "pair", "pairs_of", "undo_pair"), ".pairs"),
    **dict.fromkeys(("accept", "pending_proposals", "reject", "set_status"), ".proposals"),
    **dict.fromkeys(
        ("alternatives", "current", "current_labels", "effective_label", "history"), ".reading"
    ),
    "regenerate": ".regeneration",
    **dict.fromkeys(("LabelVersion", "Pair", "annotation_from_row", "pair_from_row"), ".rows"),
}

if TYPE_CHECKING:
    from wilson_core.records import ANNOTATION_SOURCES as ANNOTATION_SOURCES
    from wilson_core.records import PREFERENCES as PREFERENCES
    from wilson_core.records import Annotation as Annotation

    from .changes import (
        CLEARABLE as CLEARABLE,
    )
    from .changes import (
        HUMAN_SOURCES as HUMAN_SOURCES,
    )
    from .changes import (
        MAX_TAG_LENGTH as MAX_TAG_LENGTH,
    )
    from .changes import (
        STATUSES as STATUSES,
    )
    from .changes import check_rating as check_rating
    from .changes import check_tags as check_tags
    from .labels import annotate as annotate
    from .labels import annotate_many as annotate_many
    from .labels import correct as correct
    from .labels import rate as rate
    from .labels import undo as undo
    from .pairs import get_pair as get_pair
    from .pairs import harvest_pairs as harvest_pairs
    from .pairs import pair as pair
    from .pairs import pairs_of as pairs_of
    from .pairs import undo_pair as undo_pair
    from .proposals import accept as accept
    from .proposals import pending_proposals as pending_proposals
    from .proposals import reject as reject
    from .proposals import set_status as set_status
    from .reading import alternatives as alternatives
    from .reading import current as current
    from .reading import current_labels as current_labels
    from .reading import effective_label as effective_label
    from .reading import history as history
    from .regeneration import regenerate as regenerate
    from .rows import LabelVersion as LabelVersion
    from .rows import Pair as Pair
    from .rows import annotation_from_row as annotation_from_row
    from .rows import pair_from_row as pair_from_row


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CLEARABLE",
    "HUMAN_SOURCES",
    "MAX_TAG_LENGTH",
    "STATUSES",
    "AnnotationRefused",
    "LabelVersion",
    "NotFound",
    "Pair",
    "accept",
    "alternatives",
    "annotate",
    "annotate_many",
    "annotation_from_row",
    "check_rating",
    "check_tags",
    "correct",
    "current",
    "current_labels",
    "effective_label",
    "get_pair",
    "harvest_pairs",
    "history",
    "pair",
    "pair_from_row",
    "pairs_of",
    "pending_proposals",
    "rate",
    "regenerate",
    "reject",
    "set_status",
    "undo",
    "undo_pair",
    "wilson_annotation_sources",
]
