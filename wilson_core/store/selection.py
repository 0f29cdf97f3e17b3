"""What an export reads: the selected interactions with the label that counts, streaming.

The label is the view ``effective_labels`` (:mod:`.labels`), joined as ``l``:
without ``include_judge`` only a person's or a rule's label (tier 0); with it,
where no such label exists, a judge label that was not rejected.  Failed calls
and calls of deleted runs are never exported.  Rows are mappings keyed by the
column names of :data:`COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .labels import HUMAN_TIER, PROPOSED_JUDGE_TIER

#: the label that counts for ``i``, as ``l`` (needs the parameter ``max_tier``: :func:`max_tier`).
LABEL_JOIN = "LEFT JOIN effective_labels l ON l.interaction_id = i.id AND l.tier <= :max_tier"

#: its rating (from the newest label of the same tier that has one).
RATING = "l.rating"

COLUMNS = (
    "i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, s.content AS system_prompt, "
    "i.messages_json, i.response_content, i.tool_calls_json, t.content AS tools_json, "
    "i.created_at, i.context_hash, i.tools_hash, "
    "l.rating AS rating, l.preference, l.tags_json, l.corrected_response, l.source AS label_source"
)

# One indexed look-up per row (no materialised label table), so rows stream in capture order.
FROM = (
    "interactions i "
    "LEFT JOIN runs r ON r.id = i.run_id "
    "LEFT JOIN blobs s ON s.hash = i.system_hash "
    "LEFT JOIN blobs t ON t.hash = i.tools_hash "
    f"{LABEL_JOIN}"
)

#: the selected row has a label an example can use for KTO: rated, corrected or chosen/rejected.
RATED = (
    "(l.rating IS NOT NULL OR l.corrected_response IS NOT NULL"
    " OR l.preference IN ('chosen', 'rejected'))"
)
#: the selected row's label corrects its answer.
CORRECTED = "l.corrected_response IS NOT NULL"


def id_is(param: str) -> str:
    """SQL: the selected row is the interaction whose id is the parameter ``param``."""
    return f"i.id = :{param}"


def run_is(param: str) -> str:
    """SQL: the selected row belongs to the run whose id is the parameter ``param``."""
    return f"i.run_id = :{param}"


#: the default order of an export: capture order.
ORDER = "i.created_at, i.rowid"
#: the order of a per-run export.
RUN_ORDER = "r.started_at, i.run_id, i.sequence_num, i.rowid"


def max_tier(include_judge: bool) -> int:
    """The highest ``effective_labels.tier`` an export counts."""
    return PROPOSED_JUDGE_TIER if include_judge else HUMAN_TIER


def _in(column: str, name: str, values: tuple[str, ...], params: dict[str, Any]) -> str:
    names = []
    for index, value in enumerate(values):
        key = f"{name}{index}"
        params[key] = value
        names.append(f":{key}")
    return f"{column} IN ({', '.join(names)})"


def has_tag(tags_column: str, param: str) -> str:
    """SQL: the JSON list in ``tags_column`` holds the text parameter ``param``."""
    return f"EXISTS (SELECT 1 FROM json_each({tags_column}) WHERE value = :{param})"


def where_clause(options: Any, *, rating: bool = True) -> tuple[str, dict[str, Any]]:
    """The SQL conditions (over ``i``, ``r``, ``l``) of an export's filters, and their parameters.

    :param options: an :class:`~wilson_core.exporting.ExportOptions`.
    """
    params: dict[str, Any] = {"max_tier": max_tier(options.include_judge)}
    conditions = ["i.status = 'ok'", "r.deleted_at IS NULL"]
    if options.call_types:
        conditions.append(_in("i.call_type", "call_type", options.call_types, params))
    if options.models:
        conditions.append(_in("i.model", "model", options.models, params))
    if options.providers:
        conditions.append(_in("i.provider", "provider", options.providers, params))
    if options.since:
        params["since"] = options.since
        conditions.append("i.created_at >= :since")
    if options.until:
        params["until"] = options.until
        conditions.append("i.created_at < :until")
    for index, tag in enumerate(options.tags):
        params[f"tag{index}"] = tag
        conditions.append(has_tag("l.tags_json", f"tag{index}"))
    if rating and options.min_rating is not None:
        params["min_rating"] = int(options.min_rating)
        conditions.append("(l.rating >= :min_rating OR l.corrected_response IS NOT NULL)")
    return " AND ".join(conditions), params


def select_sql(where: str, order_by: str = ORDER) -> str:
    return f"SELECT {COLUMNS} FROM {FROM} WHERE {where} ORDER BY {order_by}"


def iter_rows(conn: Any, where: str, params: dict[str, Any], order_by: str = ORDER) -> Iterator[Any]:
    """Stream the selected rows in batches (memory does not grow with the number of rows)."""
    stream = getattr(conn, "stream", None)
    if stream is not None:  # PostgreSQL: a server-side cursor
        yield from stream(select_sql(where, order_by), params)
        return
    cursor = conn.execute(select_sql(where, order_by), params)
    try:
        while True:
            rows = cursor.fetchmany(2000)
            if not rows:
                return
            yield from rows
    finally:
        cursor.close()


def count_rows(conn: Any, where: str, params: dict[str, Any]) -> int:
    return conn.execute(f"SELECT count(*) FROM {FROM} WHERE {where}", params).fetchone()[0]


def run_ids(conn: Any, where: str, params: dict[str, Any]) -> list[str]:
    """The distinct runs of the selected calls."""
    return [row[0] for row in conn.execute(
        f"SELECT DISTINCT i.run_id FROM {FROM} WHERE {where} ORDER BY i.run_id", params
    )]


def run_contexts(conn: Any, where: str, params: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(run_id, context key, tools hash)`` of every selected call, by run and sequence."""
    sql = (f"SELECT i.run_id, coalesce(i.context_hash, i.messages_json), coalesce(i.tools_hash, '') "
           f"FROM {FROM} WHERE {where} ORDER BY i.run_id, i.sequence_num, i.created_at")
    for row in conn.execute(sql, params):
        yield row[0], row[1], row[2]


def rows_by_id(conn: Any, ids: list[str], options: Any) -> dict[str, Any]:
    """Rows of the given interactions (failed calls and deleted runs left out)."""
    if not ids:
        return {}
    params: dict[str, Any] = {"max_tier": max_tier(options.include_judge)}
    where = "i.status = 'ok' AND r.deleted_at IS NULL AND " + _in("i.id", "id", tuple(ids), params)
    return {row["id"]: row for row in conn.execute(select_sql(where), params)}


def tool_results_for(conn: Any, interaction_ids: list[str]) -> dict[str, list[Any]]:
    """Recorded tool results per interaction, in the order they were recorded."""
    if not interaction_ids:
        return {}
    marks = ", ".join("?" for _ in interaction_ids)
    result: dict[str, list[Any]] = {}
    for row in conn.execute(
        f"SELECT * FROM tool_results WHERE interaction_id IN ({marks}) ORDER BY created_at, rowid",
        interaction_ids,
    ):
        result.setdefault(row["interaction_id"], []).append(row)
    return result


def explicit_pairs(conn: Any, options: Any) -> Iterator[Any]:
    """Current pairs (not undone) from accepted sources, oldest first."""
    sources = ["human", "import", "rule"] + (["judge"] if options.include_judge else [])
    marks = ", ".join("?" for _ in sources)
    yield from conn.execute(
        f"SELECT id, chosen_id, rejected_id, source FROM pairs "
        f"WHERE undone_at IS NULL AND source IN ({marks}) ORDER BY created_at, rowid",
        sources,
    )


def harvested_pairs(
    conn: Any, options: Any, where: str, params: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """(chosen, rejected) ids of answers to the same context and tools rated high and low."""
    params = {**params, "hi": options.kto_desirable, "lo": options.kto_undesirable}
    sql = f"""
        WITH rated AS (
            SELECT * FROM (SELECT i.id, i.context_hash, i.tools_hash, l.rating AS rating, i.created_at
                           FROM {FROM} WHERE {where} AND i.context_hash IS NOT NULL) AS x
            WHERE rating IS NOT NULL)
        SELECT a.id AS chosen_id, b.id AS rejected_id FROM rated a JOIN rated b
          ON a.context_hash = b.context_hash AND coalesce(a.tools_hash, '') = coalesce(b.tools_hash, '')
          AND a.id != b.id
        WHERE a.rating >= :hi AND b.rating <= :lo
        ORDER BY a.created_at, b.created_at
    """
    for row in conn.execute(sql, params):
        yield row["chosen_id"], row["rejected_id"]


def migrations_applied(store: Any) -> list[str]:
    """Names of the schema migrations applied to the store, in order (for the manifest)."""
    if getattr(store, "dialect", "sqlite") == "postgresql":
        from .pg_schema import applied

        return applied(store.connection())
    try:
        return [row[0] for row in store.connection().execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson' ORDER BY applied_at, rowid"
        )]
    except Exception:  # an old database without the table
        return []
