"""The append-only label versions: checking the interaction, finding, appending, marking undone."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.records import Annotation, utcnow

from .changes import _Change


def _check_interaction(conn: sqlite3.Connection, interaction_id: str, *, allow_deleted: bool = False) -> sqlite3.Row:
    row = conn.execute(
        "SELECT i.id, i.run_id, i.context_hash, r.deleted_at FROM interactions i "
        "LEFT JOIN runs r ON r.id = i.run_id WHERE i.id = ?",
        (interaction_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no interaction with id {interaction_id!r}")
    if row["deleted_at"] is not None and not allow_deleted:
        raise AnnotationRefused(
            f"interaction {interaction_id} belongs to run {row['run_id']}, which was deleted "
            f"at {row['deleted_at']}; its interactions cannot be annotated"
        )
    return row


def _latest(conn: sqlite3.Connection, interaction_id: str, source: str, annotator: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL ORDER BY version DESC LIMIT 1",
        (interaction_id, source, annotator),
    ).fetchone()


def _previous(conn: sqlite3.Connection, row: sqlite3.Row) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL AND version < ? ORDER BY version DESC LIMIT 1",
        (row["interaction_id"], row["source"], row["annotator"], row["version"]),
    ).fetchone()


def _append(
    conn: sqlite3.Connection,
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
    version = (
        conn.execute(
            "SELECT max(version) FROM annotations WHERE interaction_id = ? AND source = ? "
            "AND annotator = ?",
            (interaction_id, source, annotator),
        ).fetchone()[0]
        or 0
    ) + 1
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
        version=version,
    )
    conn.execute(
        "INSERT INTO annotations (id, interaction_id, rating, preference, pair_id, tags_json, "
        "notes, corrected_response, source, annotator, status, version, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            annotation.id,
            interaction_id,
            annotation.rating,
            annotation.preference,
            annotation.pair_id,
            json.dumps(list(annotation.tags), ensure_ascii=False) if annotation.tags else None,
            annotation.notes,
            annotation.corrected_response,
            source,
            annotator,
            status,
            version,
            annotation.created_at,
        ),
    )
    return annotation


def _mark_undone(conn: sqlite3.Connection, annotation_id: str, when: str | None = None) -> None:
    conn.execute(
        "UPDATE annotations SET undone_at = ? WHERE id = ?", (when or utcnow(), annotation_id)
    )


class _write:
    """A ``BEGIN IMMEDIATE`` transaction (reads inside it see a stable database)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        from wilson_core.store.store import transaction

        self._tx = transaction(conn)

    def __enter__(self) -> sqlite3.Connection:
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._tx.__exit__(*exc)
