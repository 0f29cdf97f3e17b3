"""Reading labels: the current one of a stream, the one that counts, the history, alternatives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from wilson_core.records import Annotation

from .changes import HUMAN_SOURCES
from .rows import LabelVersion, annotation_from_row
from .versions import _check_interaction, _latest

if TYPE_CHECKING:
    from wilson_core.store import Store


def current(
    store: Store, interaction_id: str, *, source: str = "human", annotator: str = "local"
) -> Annotation | None:
    """The current version of one label stream, or ``None``."""
    row = _latest(store.connection(), interaction_id, source, annotator)
    return annotation_from_row(row) if row is not None else None


def current_labels(store: Store, interaction_id: str) -> list[Annotation]:
    """Every current label of an interaction (one per annotator and source), newest first."""
    rows = store.connection().execute(
        "SELECT * FROM current_annotations WHERE interaction_id = ? ORDER BY created_at DESC",
        (interaction_id,),
    )
    return [annotation_from_row(row) for row in rows]


def effective_label(store: Store, interaction_id: str) -> Annotation | None:
    """The label that counts for an interaction (see :func:`effective_of`)."""
    return effective_of(current_labels(store, interaction_id))


def effective_of(labels: Iterable[Annotation]) -> Annotation | None:
    """Of an interaction's current labels, the one that counts: the newest accepted non-judge one.

    Rule labels (from ``harvest-pairs``) carry no rating, so the rating comes from
    the newest accepted label that has one; the other fields from the newest label.
    """
    usable = sorted(
        (a for a in labels if a.source in HUMAN_SOURCES and a.status == "accepted"),
        key=lambda a: a.created_at,
        reverse=True,
    )
    if not usable:
        return None
    newest = usable[0]
    if newest.rating is None:
        rated = next((a for a in usable if a.rating is not None), None)
        if rated is not None:
            newest = attrs.evolve(newest, rating=rated.rating)
    return newest


def history(store: Store, interaction_id: str) -> list[LabelVersion]:
    """Every label version of an interaction (all sources and annotators), oldest first."""
    _check_interaction(store.connection(), interaction_id, allow_deleted=True)
    rows = store.connection().execute(
        "SELECT * FROM annotations WHERE interaction_id = ? ORDER BY created_at, rowid",
        (interaction_id,),
    )
    return [LabelVersion(annotation_from_row(row), row["undone_at"]) for row in rows]


def alternatives(store: Store, interaction_id: str) -> list[str]:
    """Ids of the other interactions that answer the same context (same system prompt and messages)."""
    conn = store.connection()
    row = _check_interaction(conn, interaction_id, allow_deleted=True)
    if row["context_hash"] is None:
        return []
    rows = conn.execute(
        "SELECT i.id FROM interactions i LEFT JOIN runs r ON r.id = i.run_id "
        "WHERE i.context_hash = ? AND i.id != ? AND r.deleted_at IS NULL "
        "ORDER BY i.created_at, i.rowid",
        (row["context_hash"], interaction_id),
    )
    return [r[0] for r in rows]
