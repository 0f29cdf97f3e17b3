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

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.hookspecs import hookimpl as hookimpl
from wilson_core.records import ANNOTATION_SOURCES as ANNOTATION_SOURCES
from wilson_core.records import PREFERENCES as PREFERENCES
from wilson_core.records import Annotation as Annotation

from .changes import CLEARABLE, HUMAN_SOURCES, MAX_TAG_LENGTH, STATUSES, check_rating, check_tags
from .hooks import wilson_annotation_sources
from .labels import annotate, annotate_many, correct, rate, undo
from .pairs import get_pair, harvest_pairs, pair, pairs_of, undo_pair
from .proposals import accept, pending_proposals, reject, set_status
from .reading import alternatives, current, current_labels, effective_label, history
from .regeneration import regenerate
from .rows import LabelVersion, Pair, annotation_from_row, pair_from_row

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
