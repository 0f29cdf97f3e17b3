"""The SQL of shadow answers: a local model's answer next to the upstream answer it shadowed.

``wilson proxy``'s shadow route stores the local answer as its own interaction
(same messages, so the same ``context_hash``) in a run whose metadata is
``{"shadow_of": <upstream interaction id>, "route": NAME}``.  The metadata is
matched with ``LIKE`` and read in Python (no JSON functions), so the same
statements run on SQLite and, through the store's translation, PostgreSQL.

Readers: ``wilson stats`` (agreement), ``wilson annotate harvest-pairs
--from-shadow`` and the dashboard's side-by-side view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

#: the answer columns every reader needs, for interaction alias ``i``
_ANSWER = (
    "i.id, i.run_id, i.call_type, i.provider, i.model, i.status, i.error, i.response_content, "
    "i.tool_calls_json, i.context_hash, i.duration_ms, i.created_at"
)
_CHUNK = 500


def _shadow_of(metadata_json: str | None) -> tuple[str | None, str | None]:
    try:
        metadata = json.loads(metadata_json or "null")
    except ValueError:
        return None, None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("shadow_of"), str):
        return None, None
    route = metadata.get("route")
    return metadata["shadow_of"], route if isinstance(route, str) else None


def _answers(conn: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(f"SELECT {_ANSWER} FROM interactions i WHERE i.id IN ({marks})", chunk):
            found[row["id"]] = dict(row)
    return found


def shadow_pairs(
    conn: Any, upstream_ids: Iterable[str] | None = None, *, context_hash: str | None = None
) -> list[dict[str, Any]]:
    """``{"upstream": answer, "shadow": answer, "route": name}`` for every live shadow answer, oldest first.

    An answer is a dict of the interaction's columns (``id``, ``call_type``,
    ``status``, ``response_content``, ``tool_calls_json``, ``context_hash``...).
    A shadow whose upstream answer is gone (or in a deleted run) is left out.
    ``upstream_ids``: only the shadows of these upstream answers; ``context_hash``:
    only shadow answers to that context (read through its index: the dashboard's view).
    """
    wanted = set(upstream_ids) if upstream_ids is not None else None
    narrow, params = "", []
    if context_hash is not None:
        narrow, params = " AND i.context_hash = ?", [context_hash]
    shadows: list[tuple[dict[str, Any], str, str | None]] = []
    for row in conn.execute(
        f"SELECT r.metadata_json AS run_metadata, {_ANSWER} FROM runs r JOIN interactions i ON i.run_id = r.id "
        f"WHERE r.deleted_at IS NULL AND r.metadata_json LIKE '%\"shadow_of\"%'{narrow} "
        "ORDER BY i.created_at, i.rowid",
        params,
    ):
        of, route = _shadow_of(row["run_metadata"])
        if of is None or (wanted is not None and of not in wanted):
            continue
        answer = dict(row)
        answer.pop("run_metadata", None)
        shadows.append((answer, of, route))
    upstream = _answers(conn, sorted({of for _, of, _ in shadows}))
    live_runs = _live_runs(conn, {a["run_id"] for a in upstream.values() if a["run_id"]})
    return [
        {"upstream": upstream[of], "shadow": answer, "route": route}
        for answer, of, route in shadows
        if of in upstream and (upstream[of]["run_id"] is None or upstream[of]["run_id"] in live_runs)
    ]


def shadows_of_context(conn: Any, interaction_id: str) -> list[dict[str, Any]]:
    """The shadow pairs an interaction is in, as the upstream answer or as the shadow answer."""
    row = conn.execute("SELECT i.context_hash, r.metadata_json FROM interactions i LEFT JOIN runs r ON r.id = i.run_id "
                       "WHERE i.id = ?", (interaction_id,)).fetchone()
    if row is None or row[0] is None:
        return []
    of, _ = _shadow_of(row[1])
    return shadow_pairs(conn, [of or interaction_id], context_hash=row[0])


def _live_runs(conn: Any, run_ids: set[str]) -> set[str]:
    ids = sorted(run_ids)
    live: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        live.update(row[0] for row in conn.execute(
            f"SELECT id FROM runs WHERE deleted_at IS NULL AND id IN ({marks})", chunk))
    return live


def judge_ratings(conn: Any, ids: Sequence[str]) -> dict[str, int]:
    """The newest current judge rating (accepted or proposed) of each of ``ids`` that has one."""
    ratings: dict[str, int] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            "SELECT interaction_id, rating FROM current_annotations WHERE source = 'judge' "
            f"AND rating IS NOT NULL AND status IN ('accepted', 'proposed') AND interaction_id IN ({marks}) "
            "ORDER BY created_at, version",
            chunk,
        ):
            ratings[row[0]] = int(row[1])  # newest last wins
    return ratings


def counted_ratings(conn: Any, ids: Sequence[str], max_tier: int) -> dict[str, int]:
    """The rating of the label that counts (``effective_labels``, tier <= ``max_tier``) of each of ``ids``."""
    ratings: dict[str, int] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            "SELECT interaction_id, rating FROM effective_labels "
            f"WHERE rating IS NOT NULL AND tier <= ? AND interaction_id IN ({marks})",
            [max_tier, *chunk],
        ):
            ratings[row[0]] = int(row[1])
    return ratings
