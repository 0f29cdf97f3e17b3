"""Preference pairs: two answers to one context, made by hand or harvested from ratings, and undone."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.records import Annotation, utcnow

from .changes import _Change, _check_stream
from .hooks import _added
from .rows import Pair, pair_from_row
from .versions import _append, _check_interaction, _latest, _mark_undone, _previous, _write

if TYPE_CHECKING:
    from wilson_core.store import Store


def pairs_of(store: Store, interaction_id: str, *, include_undone: bool = False) -> list[Pair]:
    """The pairs an interaction is in (as chosen or rejected answer)."""
    sql = "SELECT * FROM pairs WHERE (chosen_id = ? OR rejected_id = ?)"
    if not include_undone:
        sql += " AND undone_at IS NULL"
    rows = store.connection().execute(sql + " ORDER BY created_at", (interaction_id, interaction_id))
    return [pair_from_row(row) for row in rows]


def get_pair(store: Store, pair_id: str) -> Pair:
    row = store.connection().execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
    if row is None:
        raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
    return pair_from_row(row)


def pair(
    store: Store,
    chosen_id: str,
    rejected_id: str,
    *,
    force: bool = False,
    source: str = "human",
    annotator: str = "local",
) -> Pair:
    """Record that ``chosen_id`` answers the shared context better than ``rejected_id``.

    Both labels get ``preference`` chosen / rejected and the pair id.

    :raises AnnotationRefused: the same id twice, or the two answers do not
        share their context (system prompt and messages) and ``force`` is false.
    """
    _check_stream(source, annotator, "accepted")
    if chosen_id == rejected_id:
        raise AnnotationRefused("a pair needs two different interactions (got the same id twice)")
    conn = store.connection()
    with _write(conn):
        chosen = _check_interaction(conn, chosen_id)
        rejected = _check_interaction(conn, rejected_id)
        if not force and (
            chosen["context_hash"] is None or chosen["context_hash"] != rejected["context_hash"]
        ):
            raise AnnotationRefused(
                f"interactions {chosen_id} and {rejected_id} answer different contexts "
                "(system prompt or messages differ), so they cannot be a preference pair; "
                "pass force to pair them anyway"
            )
        new = _insert_pair(conn, chosen_id, rejected_id, source, annotator)
        written = _label_pair(conn, new, source, annotator)
    _added(store, written)
    return new


def undo_pair(store: Store, pair_id: str) -> Pair:
    """Take back a pair: the pair row and the label versions that recorded it."""
    conn = store.connection()
    with _write(conn):
        row = conn.execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if row is None:
            raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
        if row["undone_at"] is not None:
            raise AnnotationRefused(f"pair {pair_id} was already undone at {row['undone_at']}")
        _undo_pair(conn, pair_id)
    return get_pair(store, pair_id)


def harvest_pairs(
    store: Store, *, min_gap: int = 2, annotator: str = "harvest", dry_run: bool = False
) -> list[Pair]:
    """Pairs (source ``rule``) from answers to the same context whose ratings differ by ``min_gap``+.

    Ratings are the current accepted non-judge ratings.  A pair that already
    exists (in either direction, not undone) is not made again.
    """
    if not isinstance(min_gap, int) or min_gap < 1:
        raise AnnotationRefused(f"min_gap must be a whole number of stars >= 1, got {min_gap!r}")
    conn = store.connection()
    rows = conn.execute(
        """
        SELECT i.id, i.context_hash, i.created_at,
               (SELECT a.rating FROM annotations a
                 WHERE a.interaction_id = i.id AND a.undone_at IS NULL AND a.rating IS NOT NULL
                   AND a.status = 'accepted' AND a.source IN ('human', 'import', 'rule')
                 ORDER BY a.created_at DESC, a.rowid DESC LIMIT 1) AS rating
        FROM interactions i LEFT JOIN runs r ON r.id = i.run_id
        WHERE i.id IN (SELECT interaction_id FROM annotations
                        WHERE undone_at IS NULL AND rating IS NOT NULL)
          AND r.deleted_at IS NULL AND i.context_hash IS NOT NULL AND i.status = 'ok'
        ORDER BY i.context_hash, i.created_at, i.rowid
        """
    ).fetchall()
    groups: dict[str, list[sqlite3.Row]] = {}
    for row in rows:
        if row["rating"] is not None:
            groups.setdefault(row["context_hash"], []).append(row)
    existing = {
        frozenset((r[0], r[1]))
        for r in conn.execute("SELECT chosen_id, rejected_id FROM pairs WHERE undone_at IS NULL")
    }
    planned: list[tuple[str, str]] = []
    for members in groups.values():
        for a_index, a in enumerate(members):
            for b in members[a_index + 1 :]:
                if abs(a["rating"] - b["rating"]) < min_gap:
                    continue
                if frozenset((a["id"], b["id"])) in existing:
                    continue
                better, worse = (a, b) if a["rating"] > b["rating"] else (b, a)
                planned.append((better["id"], worse["id"]))
    if dry_run:
        return [Pair(chosen, rejected, source="rule", annotator=annotator) for chosen, rejected in planned]
    made: list[Pair] = []
    written: list[Annotation] = []
    with _write(conn):
        for chosen_id, rejected_id in planned:
            new = _insert_pair(conn, chosen_id, rejected_id, "rule", annotator)
            written += _label_pair(conn, new, "rule", annotator)
            made.append(new)
    _added(store, written)
    return made


def _insert_pair(conn: sqlite3.Connection, chosen_id: str, rejected_id: str, source: str, annotator: str) -> Pair:
    new = Pair(chosen_id=chosen_id, rejected_id=rejected_id, source=source, annotator=annotator)
    conn.execute(
        "INSERT INTO pairs (id, chosen_id, rejected_id, source, annotator, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (new.id, chosen_id, rejected_id, source, annotator, new.created_at),
    )
    return new


def _label_pair(conn: sqlite3.Connection, new: Pair, source: str, annotator: str) -> list[Annotation]:
    return [
        _append(conn, new.chosen_id, _Change(values={"preference": "chosen", "pair_id": new.id}), source, annotator, "accepted"),
        _append(conn, new.rejected_id, _Change(values={"preference": "rejected", "pair_id": new.id}), source, annotator, "accepted"),
    ]


def _undo_pair(conn: sqlite3.Connection, pair_id: str) -> None:
    now = utcnow()
    conn.execute("UPDATE pairs SET undone_at = ? WHERE id = ? AND undone_at IS NULL", (now, pair_id))
    # the versions that recorded this pair, when they are still the latest of their stream
    rows = conn.execute(
        "SELECT * FROM annotations WHERE pair_id = ? AND undone_at IS NULL", (pair_id,)
    ).fetchall()
    for row in rows:
        latest = _latest(conn, row["interaction_id"], row["source"], row["annotator"])
        previous = _previous(conn, row)
        introduced = previous is None or previous["pair_id"] != pair_id
        if latest is not None and latest["id"] == row["id"] and introduced:
            _mark_undone(conn, row["id"], now)
        elif latest is not None and latest["pair_id"] == pair_id:
            # labelled again since the pair was made: keep that, drop only the pair
            _append(
                conn,
                row["interaction_id"],
                _Change(clear=frozenset({"preference", "pair_id"})),
                row["source"],
                row["annotator"],
                latest["status"],
            )
