"""Reading labels: the current one of a stream, the one that counts, the history, alternatives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wilson_core.records import Annotation
from wilson_core.store import labels

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
    return [annotation_from_row(row) for row in labels.current_labels(store.connection(), interaction_id)]


def effective_label(store: Store, interaction_id: str, *, include_judge: bool = False) -> Annotation | None:
    """The label that counts for an interaction (the view ``effective_labels``), or ``None``.

    The newest current accepted label from a person or a rule (sources ``human``,
    ``import``, ``rule``), with the rating of the newest of them that has one (rule
    labels from ``harvest-pairs`` carry none).  With ``include_judge``, where no such
    label exists, an accepted judge label, else a judge proposal, counts instead.
    """
    tier = labels.PROPOSED_JUDGE_TIER if include_judge else labels.HUMAN_TIER
    row = labels.effective(store.connection(), [interaction_id], tier).get(interaction_id)
    return annotation_from_row(row) if row is not None else None


def history(store: Store, interaction_id: str) -> list[LabelVersion]:
    """Every label version of an interaction (all sources and annotators), oldest first."""
    _check_interaction(store.connection(), interaction_id, allow_deleted=True)
    rows = labels.history(store.connection(), interaction_id)
    return [LabelVersion(annotation_from_row(row), row["undone_at"]) for row in rows]


def alternatives(store: Store, interaction_id: str) -> list[str]:
    """Ids of the other interactions that answer the same context (same system prompt and messages)."""
    conn = store.connection()
    row = _check_interaction(conn, interaction_id, allow_deleted=True)
    if row["context_hash"] is None:
        return []
    return labels.alternatives(conn, row["context_hash"], interaction_id)
