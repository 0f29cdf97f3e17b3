"""The append-only label versions: checking the interaction, finding, appending, marking undone."""

from __future__ import annotations

import json
from typing import Any

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.records import Annotation, utcnow
from wilson_core.store import labels

from .changes import _Change


def _check_interaction(conn: Any, interaction_id: str, *, allow_deleted: bool = False) -> Any:
    row = labels.interaction_for_label(conn, interaction_id)
    if row is None:
        raise NotFound(f"no interaction with id {interaction_id!r}")
    if row["deleted_at"] is not None and not allow_deleted:
        raise AnnotationRefused(
            f"interaction {interaction_id} belongs to run {row['run_id']}, which was deleted "
            f"at {row['deleted_at']}; its interactions cannot be annotated"
        )
    return row


def _latest(conn: Any, interaction_id: str, source: str, annotator: str) -> Any:
    return labels.latest(conn, interaction_id, source, annotator)


def _previous(conn: Any, row: Any) -> Any:
    return labels.previous(conn, row)


def _append(
    conn: Any,
    interaction_id: str,
    change: _Change,
    source: str,
    annotator: str,
    status: str,
) -> Annotation:
    previous = _latest(conn, interaction_id, source, annotator)
    before: dict[str, Any] = {}
    if previous is not None:
        before = dict(previous)
        before["tags"] = json.loads(previous["tags_json"] or "[]")
    state = change.apply(before)
    annotation = Annotation(
        interaction_id=interaction_id,
        rating=state["rating"],
        preference=state["preference"],
        pair_id=state["pair_id"],
        tags=tuple(state["tags"]),
        notes=state["notes"],
        corrected_response=state["corrected_response"],
        source=source,
        annotator=annotator,
        status=status,
        version=labels.next_version(conn, interaction_id, source, annotator),
    )
    labels.insert_annotation(conn, annotation)
    return annotation


def _mark_undone(conn: Any, annotation_id: str, when: str | None = None) -> None:
    labels.mark_undone(conn, annotation_id, when or utcnow())


class _write:
    """A write transaction for labels (reads inside it see a stable database)."""

    def __init__(self, store: Any) -> None:
        self._tx = store.label_transaction()

    def __enter__(self) -> Any:
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._tx.__exit__(*exc)
