"""The SQL of labels and pairs: append-only versions, undo marks, pairs, the label that counts.

The annotation API (:mod:`wilson_core.annotations`) decides what to write;
these functions are the statements it runs, each on the connection of an open
write transaction (:meth:`~wilson_core.store.store.Store.label_transaction`) or
on the reading thread's connection.  Rows come back as mappings keyed by the
``annotations`` / ``pairs`` column names.

"The label that counts" is defined once, as the view ``effective_labels``
(migration ``m008_create_effective_labels_view``): export, the dashboard, pair
harvesting and :func:`wilson_core.annotations.effective_label` all read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from wilson_core.records import Annotation

#: ``effective_labels.tier``: 0 a person's or a rule's accepted label, 1 an accepted judge
#: label, 2 a judge proposal.  The label that counts is the one of the lowest tier present.
HUMAN_TIER = 0
ACCEPTED_JUDGE_TIER = 1
PROPOSED_JUDGE_TIER = 2


def _tier(alias: str) -> str:
    return (
        f"(CASE WHEN {alias}.status = 'accepted' AND {alias}.source IN ('human', 'import', 'rule') THEN 0"
        f" WHEN {alias}.source = 'judge' AND {alias}.status = 'accepted' THEN 1"
        f" WHEN {alias}.source = 'judge' AND {alias}.status = 'proposed' THEN 2 END)"
    )


#: The one definition of the label that counts (the body of the view ``effective_labels``).
#:
#: For each interaction with a current label: the newest current label of the lowest tier
#: (human before accepted judge before proposed judge), with the rating of the newest label
#: of that tier that has one (rule labels from pair harvesting carry no rating).
#: Undone versions never count (``current_annotations``); ties on time go to the higher version.
EFFECTIVE_LABELS_VIEW = f"""
CREATE VIEW IF NOT EXISTS effective_labels AS
SELECT a.id, a.interaction_id,
       coalesce(a.rating, (SELECT b.rating FROM current_annotations b
                           WHERE b.interaction_id = a.interaction_id AND b.rating IS NOT NULL
                             AND {_tier('b')} = {_tier('a')}
                           ORDER BY b.created_at DESC, b.version DESC LIMIT 1)) AS rating,
       a.preference, a.pair_id, a.tags_json, a.notes, a.corrected_response,
       a.source, a.annotator, a.status, a.version, a.created_at,
       {_tier('a')} AS tier
FROM current_annotations a
WHERE a.id = (SELECT b.id FROM current_annotations b
              WHERE b.interaction_id = a.interaction_id AND {_tier('b')} IS NOT NULL
              ORDER BY {_tier('b')}, b.created_at DESC, b.version DESC LIMIT 1)
"""

#: The label that counts for every stream (interaction, annotator, source): latest version not undone.
CURRENT_ANNOTATIONS_VIEW = """
CREATE VIEW IF NOT EXISTS current_annotations AS
SELECT a.* FROM annotations a
WHERE a.undone_at IS NULL
  AND a.version = (
      SELECT max(b.version) FROM annotations b
      WHERE b.interaction_id = a.interaction_id
        AND b.annotator = a.annotator
        AND b.source = a.source
        AND b.undone_at IS NULL
  )
"""

ANNOTATION_COLUMNS = (
    "id, interaction_id, rating, preference, pair_id, tags_json, notes, corrected_response, "
    "source, annotator, status, version, created_at"
)
INSERT_ANNOTATION = (
    f"INSERT OR IGNORE INTO annotations ({ANNOTATION_COLUMNS}, undone_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_PAIR = (
    "INSERT OR IGNORE INTO pairs (id, chosen_id, rejected_id, source, annotator, created_at, undone_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def tags_json(tags: Sequence[str]) -> str | None:
    return json.dumps(list(tags), ensure_ascii=False) if tags else None


def annotation_row(a: Annotation, undone_at: str | None = None) -> tuple[Any, ...]:
    """The ``annotations`` row of ``a`` (the parameters of :data:`INSERT_ANNOTATION`)."""
    return (
        a.id, a.interaction_id, a.rating, a.preference, a.pair_id, tags_json(a.tags), a.notes,
        a.corrected_response, a.source, a.annotator, a.status, a.version, a.created_at, undone_at,
    )


# -- interactions, as the label API sees them ------------------------------------


def interaction_for_label(conn: Any, interaction_id: str) -> Any:
    """``id, run_id, context_hash, deleted_at`` of an interaction (and its run), or ``None``."""
    return conn.execute(
        "SELECT i.id, i.run_id, i.context_hash, r.deleted_at FROM interactions i "
        "LEFT JOIN runs r ON r.id = i.run_id WHERE i.id = ?",
        (interaction_id,),
    ).fetchone()


def alternatives(conn: Any, context_hash: str, interaction_id: str) -> list[str]:
    """Ids of the other live interactions with this context, oldest first."""
    rows = conn.execute(
        "SELECT i.id FROM interactions i LEFT JOIN runs r ON r.id = i.run_id "
        "WHERE i.context_hash = ? AND i.id != ? AND r.deleted_at IS NULL "
        "ORDER BY i.created_at, i.rowid",
        (context_hash, interaction_id),
    )
    return [r[0] for r in rows]


def last_sequence_num(conn: Any, run_id: str) -> int:
    row = conn.execute("SELECT max(sequence_num) FROM interactions WHERE run_id = ?", (run_id,)).fetchone()
    return int(row[0] or 0)


# -- label versions -----------------------------------------------------------------


def latest(conn: Any, interaction_id: str, source: str, annotator: str) -> Any:
    """The current version of one stream (the newest not undone), or ``None``."""
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL ORDER BY version DESC LIMIT 1",
        (interaction_id, source, annotator),
    ).fetchone()


def previous(conn: Any, row: Any) -> Any:
    """The version of ``row``'s stream before ``row`` that is not undone, or ``None``."""
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL AND version < ? ORDER BY version DESC LIMIT 1",
        (row["interaction_id"], row["source"], row["annotator"], row["version"]),
    ).fetchone()


def next_version(conn: Any, interaction_id: str, source: str, annotator: str) -> int:
    row = conn.execute(
        "SELECT max(version) FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ?",
        (interaction_id, source, annotator),
    ).fetchone()
    return int(row[0] or 0) + 1


def insert_annotation(conn: Any, annotation: Annotation) -> None:
    conn.execute(INSERT_ANNOTATION, annotation_row(annotation))


def mark_undone(conn: Any, annotation_id: str, when: str) -> None:
    conn.execute("UPDATE annotations SET undone_at = ? WHERE id = ?", (when, annotation_id))


def current_labels(conn: Any, interaction_id: str) -> list[Any]:
    """Every current label (one per stream) of an interaction, newest first."""
    return conn.execute(
        "SELECT * FROM current_annotations WHERE interaction_id = ? ORDER BY created_at DESC, version DESC",
        (interaction_id,),
    ).fetchall()


def history(conn: Any, interaction_id: str) -> list[Any]:
    """Every version of every stream of an interaction, oldest first."""
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? ORDER BY created_at, rowid",
        (interaction_id,),
    ).fetchall()


def proposals(
    conn: Any, *, interaction_id: str | None = None, source: str = "judge",
    annotator: str | None = None, limit: int | None = None,
) -> list[Any]:
    """Current labels of ``source`` still ``proposed`` (newest first)."""
    sql = "SELECT * FROM current_annotations WHERE source = ? AND status = 'proposed'"
    params: list[Any] = [source]
    if interaction_id is not None:
        sql += " AND interaction_id = ?"
        params.append(interaction_id)
    if annotator is not None:
        sql += " AND annotator = ?"
        params.append(annotator)
    sql += " ORDER BY created_at DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return conn.execute(sql, params).fetchall()


def stream_annotator(conn: Any, interaction_id: str, source: str) -> str | None:
    """The annotator of the newest live label of ``source`` on an interaction."""
    row = conn.execute(
        "SELECT annotator FROM annotations WHERE interaction_id = ? AND source = ? "
        "AND undone_at IS NULL ORDER BY created_at DESC LIMIT 1",
        (interaction_id, source),
    ).fetchone()
    return row[0] if row else None


def effective(conn: Any, interaction_ids: Sequence[str], max_tier: int) -> dict[str, Any]:
    """The ``effective_labels`` rows of these interactions whose tier is at most ``max_tier``."""
    result: dict[str, Any] = {}
    ids = list(interaction_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT * FROM effective_labels WHERE interaction_id IN ({marks}) AND tier <= ?",
            [*chunk, max_tier],
        ):
            result[row["interaction_id"]] = row
    return result


def newest_judge_labels(conn: Any, interaction_ids: Sequence[str]) -> dict[str, Any]:
    """The newest current judge label of each interaction."""
    result: dict[str, Any] = {}
    ids = list(interaction_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT * FROM current_annotations WHERE source = 'judge' AND interaction_id IN ({marks}) "
            "ORDER BY created_at, version",
            chunk,
        ):
            result[row["interaction_id"]] = row  # ordered oldest first: the last one wins
    return result


def unjudged(
    conn: Any, annotator: str, *, skip_call_type: str, call_types: Sequence[str], limit: int | None
) -> list[str]:
    """Ids of live successful interactions this judge has not labelled, newest first."""
    sql = (
        "SELECT i.id FROM interactions i LEFT JOIN runs r ON r.id = i.run_id "
        "WHERE i.status = 'ok' AND r.deleted_at IS NULL AND coalesce(i.call_type, '') != ? "
        "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.interaction_id = i.id "
        "AND a.source = 'judge' AND a.annotator = ? AND a.undone_at IS NULL)"
    )
    params: list[Any] = [skip_call_type, annotator]
    if call_types:
        sql += f" AND i.call_type IN ({', '.join('?' for _ in call_types)})"
        params += list(call_types)
    sql += " ORDER BY i.created_at DESC, i.rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [row[0] for row in conn.execute(sql, params)]


# -- pairs -------------------------------------------------------------------------------


def insert_pair(conn: Any, pair: Any) -> None:
    conn.execute(
        INSERT_PAIR,
        (pair.id, pair.chosen_id, pair.rejected_id, pair.source, pair.annotator, pair.created_at,
         pair.undone_at),
    )


def get_pair(conn: Any, pair_id: str) -> Any:
    return conn.execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()


def pairs_of(conn: Any, interaction_id: str, *, include_undone: bool) -> list[Any]:
    sql = "SELECT * FROM pairs WHERE (chosen_id = ? OR rejected_id = ?)"
    if not include_undone:
        sql += " AND undone_at IS NULL"
    return conn.execute(sql + " ORDER BY created_at, rowid", (interaction_id, interaction_id)).fetchall()


def mark_pair_undone(conn: Any, pair_id: str, when: str) -> None:
    conn.execute("UPDATE pairs SET undone_at = ? WHERE id = ? AND undone_at IS NULL", (when, pair_id))


def labels_with_pair(conn: Any, pair_id: str) -> list[Any]:
    return conn.execute(
        "SELECT * FROM annotations WHERE pair_id = ? AND undone_at IS NULL ORDER BY rowid", (pair_id,)
    ).fetchall()


def live_pair_members(conn: Any) -> Iterator[tuple[str, str]]:
    for row in conn.execute("SELECT chosen_id, rejected_id FROM pairs WHERE undone_at IS NULL"):
        yield row[0], row[1]


def rated_for_harvest(conn: Any) -> list[Any]:
    """``id, context_hash, rating`` of live successful answers with a human rating that counts,
    grouped by context (oldest first within one)."""
    return conn.execute(
        "SELECT i.id, i.context_hash, e.rating FROM effective_labels e "
        "JOIN interactions i ON i.id = e.interaction_id LEFT JOIN runs r ON r.id = i.run_id "
        f"WHERE e.tier = {HUMAN_TIER} AND e.rating IS NOT NULL AND r.deleted_at IS NULL "
        "AND i.context_hash IS NOT NULL AND i.status = 'ok' "
        "ORDER BY i.context_hash, i.created_at, i.rowid"
    ).fetchall()
