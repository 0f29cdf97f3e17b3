"""The dashboard's reads: filtered, sorted, keyset-paged interactions, counts, labels, facets.

Paging is by keyset (the last row's sort value and rowid), never OFFSET, so
page 2000 costs what page 1 costs.  The newest-first order walks the
``created_at`` index; full-text search uses :mod:`.search`.

The label a reviewer sees is the label that counts (view ``effective_labels``)
up to :data:`TIER`: a person's or a rule's label, else an accepted judge label
(a judge proposal is shown apart, as the judge's label, until it is decided).

``filters`` is any object with the attributes of the dashboard's ``Filters``
(``call_types, models, providers, status, min_rating, max_rating, annotated,
tag, run_id, since, until, q, judge, sort``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import search
from .labels import ACCEPTED_JUDGE_TIER

PREVIEW_CHARS = 400

#: the labels the dashboard counts: people's and rules', and judge labels once accepted.
TIER = ACCEPTED_JUDGE_TIER

#: the rating that counts for ``i``.
RATING_SQL = f"(SELECT e.rating FROM effective_labels e WHERE e.interaction_id = i.id AND e.tier <= {TIER})"
#: the interactions with a label that counts.
ANNOTATED_SQL = f"i.id IN (SELECT e.interaction_id FROM effective_labels e WHERE e.tier <= {TIER})"
#: each labelled interaction's rating that counts, computed once over the labels, not per row.
_RATED = (
    "SELECT e.interaction_id, e.rating FROM effective_labels e "
    f"WHERE e.tier <= {TIER} AND e.rating IS NOT NULL"
)
MIN_RATING_SQL = f"i.id IN (SELECT rated.interaction_id FROM ({_RATED}) rated WHERE rated.rating >= ?)"
MAX_RATING_SQL = f"i.id IN (SELECT rated.interaction_id FROM ({_RATED}) rated WHERE rated.rating <= ?)"
#: the status of each interaction's newest current judge label.
_JUDGED = (
    "SELECT a.interaction_id FROM current_annotations a WHERE a.source = 'judge' "
    "AND a.status {status} AND a.created_at = (SELECT max(b.created_at) FROM current_annotations b "
    "WHERE b.interaction_id = a.interaction_id AND b.source = 'judge')"
)
JUDGE_ANY_SQL = (
    "i.id IN (SELECT a.interaction_id FROM annotations a WHERE a.source = 'judge' AND a.undone_at IS NULL)"
)
JUDGE_STATUS_SQL = "i.id IN (" + _JUDGED.format(status="= ?") + ")"
PROPOSED_SQL = "i.id IN (" + _JUDGED.format(status="= 'proposed'") + ")"
TAG_SQL = (
    "i.id IN (SELECT e.interaction_id FROM effective_labels e, json_each(e.tags_json) t "
    f"WHERE e.tier <= {TIER} AND t.value = ?)"
)

SORTS: dict[str, tuple[str, str]] = {
    "newest": ("i.created_at", "DESC"),
    "oldest": ("i.created_at", "ASC"),
    "rating_desc": (f"coalesce({RATING_SQL}, 0)", "DESC"),
    "rating_asc": (f"coalesce({RATING_SQL}, 6)", "ASC"),
    "slowest": ("coalesce(i.duration_ms, 0)", "DESC"),
    "tokens": ("coalesce(i.total_tokens, 0)", "DESC"),
}

#: named extra conditions for :func:`count`.
EXTRA = {"annotated": ANNOTATED_SQL, "proposed": PROPOSED_SQL}

FROM = "interactions i LEFT JOIN runs r ON r.id = i.run_id"
COLUMNS = (
    "i.rowid AS rid, i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, i.status, "
    f"substr(i.user_prompt, 1, {PREVIEW_CHARS}) AS prompt, length(i.user_prompt) AS prompt_chars, "
    f"substr(i.response_content, 1, {PREVIEW_CHARS}) AS response, "
    "length(i.response_content) AS response_chars, i.tool_calls_json, i.error, "
    "i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms, i.created_at"
)


def where(filters: Any, *, counting: bool = False) -> tuple[str, list[Any]]:
    """SQL conditions over ``i`` (interactions) and ``r`` (runs), and their parameters.

    A page stops after 50 rows, so it checks the rating row by row (cheap while
    matches are common); a count visits every row, so it joins the ratings
    computed once over the labels.
    """
    conditions = ["r.deleted_at IS NULL"]
    params: list[Any] = []

    def among(column: str, values: Sequence[str]) -> None:
        conditions.append(f"{column} IN ({', '.join('?' for _ in values)})")
        params.extend(values)

    if filters.call_types:
        among("i.call_type", filters.call_types)
    if filters.models:
        among("i.model", filters.models)
    if filters.providers:
        among("i.provider", filters.providers)
    if filters.status:
        conditions.append("i.status = ?")
        params.append(filters.status)
    if filters.run_id:
        conditions.append("i.run_id = ?")
        params.append(filters.run_id)
    if filters.since:
        conditions.append("i.created_at >= ?")
        params.append(filters.since)
    if filters.until:
        conditions.append("i.created_at < ?")
        # a bare date means "up to the end of that day"
        params.append(filters.until + "T99" if len(filters.until) == 10 else filters.until)
    if filters.min_rating is not None:
        conditions.append(MIN_RATING_SQL if counting else f"{RATING_SQL} >= ?")
        params.append(filters.min_rating)
    if filters.max_rating is not None:
        conditions.append(MAX_RATING_SQL if counting else f"{RATING_SQL} <= ?")
        params.append(filters.max_rating)
    if filters.annotated is not None:
        conditions.append(ANNOTATED_SQL if filters.annotated else f"NOT {ANNOTATED_SQL}")
    if filters.tag:
        conditions.append(TAG_SQL)
        params.append(filters.tag)
    if filters.judge == "any":
        conditions.append(JUDGE_ANY_SQL)
    elif filters.judge == "none":
        conditions.append(f"NOT {JUDGE_ANY_SQL}")
    elif filters.judge:
        conditions.append(JUDGE_STATUS_SQL)
        params.append(filters.judge)
    if filters.q:
        query = search.match_query(filters.q)
        if query is not None:
            conditions.append(f"i.rowid IN ({search.search_rowids_sql()})")
            params.append(query)
    return " AND ".join(conditions), params


def page_rows(
    conn: Any, filters: Any, cursor: tuple[Any, int] | None, wanted: int
) -> list[Any]:
    """Up to ``wanted`` rows after ``cursor`` (sort value, rowid), with ``sort_value`` and ``rid``."""
    if filters.sort in ("rating_desc", "rating_asc"):
        return _rating_rows(conn, filters, cursor, wanted)
    key, direction = SORTS[filters.sort]
    condition, params = where(filters)
    if cursor:
        value, rowid = cursor
        op = "<" if direction == "DESC" else ">"
        condition += f" AND ({key}, i.rowid) {op} (?, ?)"
        params += [value, rowid]
    sql = (
        f"SELECT {COLUMNS}, {key} AS sort_value FROM {FROM} WHERE {condition} "
        f"ORDER BY {key} {direction}, i.rowid {direction} LIMIT ?"
    )
    return conn.execute(sql, [*params, wanted]).fetchall()


def _rating_rows(conn: Any, filters: Any, cursor: tuple[Any, int] | None, wanted: int) -> list[Any]:
    """Rows sorted by rating in two keyset segments: the rated ones (sorted over the labels
    only), then the unrated ones in rowid order, instead of a rating lookup for every row.

    The sort value of an unrated row is 0 (best first) or 6 (worst first), as if it sorted
    after every rated one, so a cursor says which segment it points into.
    """
    descending = filters.sort == "rating_desc"
    direction, op, unrated = ("DESC", "<", 0) if descending else ("ASC", ">", 6)
    condition_all, params = where(filters)
    value, rowid = cursor if cursor else (None, None)
    rows: list[Any] = []
    if value != unrated:
        condition, extra = "", []
        if value is not None:
            condition, extra = f" AND (eff.rating, i.rowid) {op} (?, ?)", [value, rowid]
        rows = conn.execute(
            f"SELECT {COLUMNS}, eff.rating AS sort_value FROM ({_RATED}) eff "
            f"JOIN interactions i ON i.id = eff.interaction_id LEFT JOIN runs r ON r.id = i.run_id "
            f"WHERE {condition_all}{condition} ORDER BY eff.rating {direction}, i.rowid {direction} LIMIT ?",
            [*params, *extra, wanted],
        ).fetchall()
        rowid = None
    if len(rows) < wanted:
        condition, extra = "", []
        if rowid is not None:
            condition, extra = f" AND i.rowid {op} ?", [rowid]
        rows += conn.execute(
            f"SELECT {COLUMNS}, {unrated} AS sort_value FROM {FROM} "
            f"WHERE {condition_all} AND i.id NOT IN (SELECT rated.interaction_id FROM ({_RATED}) rated)"
            f"{condition} ORDER BY i.rowid {direction} LIMIT ?",
            [*params, *extra, wanted - len(rows)],
        ).fetchall()
    return rows


def count(conn: Any, filters: Any, extra: str | None = None) -> int:
    """How many interactions match ``filters`` (and the named condition ``extra``: :data:`EXTRA`)."""
    condition, params = where(filters, counting=True)
    if extra:
        condition += f" AND {EXTRA.get(extra, extra)}"
    return conn.execute(f"SELECT count(*) FROM {FROM} WHERE {condition}", params).fetchone()[0]


def run_deleted_at(conn: Any, run_id: str) -> str | None:
    row = conn.execute("SELECT deleted_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def facets(conn: Any) -> dict[str, list[str]]:
    """The values the filter menus offer (one scan over interactions)."""
    call_types: set[str] = set()
    models: set[str] = set()
    providers: set[str] = set()
    statuses: set[str] = set()
    for row in conn.execute(
        "SELECT call_type, model, provider, status FROM interactions GROUP BY call_type, model, provider, status"
    ):
        call_types.add(row[0] or "")
        models.add(row[1] or "")
        providers.add(row[2] or "")
        statuses.add(row[3] or "")
    tags = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT t.value FROM annotations a, json_each(a.tags_json) t "
            "WHERE a.undone_at IS NULL AND a.tags_json IS NOT NULL ORDER BY 1 LIMIT 500"
        )
    ]
    return {
        "call_types": sorted(v for v in call_types if v),
        "models": sorted(v for v in models if v),
        "providers": sorted(v for v in providers if v),
        "statuses": sorted(v for v in statuses if v),
        "tags": tags,
    }
