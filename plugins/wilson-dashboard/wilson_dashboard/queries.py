"""What the Training tab reads: filtered, sorted, keyset-paged interactions and their labels.

Paging is by keyset (the last row's sort value and rowid), never OFFSET, so
page 2000 costs what page 1 costs.  The newest-first order walks the
``created_at`` index; full-text search uses the FTS5 index, synced lazily.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

from wilson_core import annotations
from wilson_core.errors import WilsonError
from wilson_core.records import Annotation
from wilson_core.store import search

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PREVIEW_CHARS = 400

#: the current rating that counts (newest accepted non-judge label that has one).
RATING_SQL = (
    "(SELECT a.rating FROM annotations a WHERE a.interaction_id = i.id AND a.undone_at IS NULL "
    "AND a.rating IS NOT NULL AND a.status = 'accepted' AND a.source IN ('human', 'import', 'rule') "
    "ORDER BY a.created_at DESC, a.rowid DESC LIMIT 1)"
)
_HUMAN = "a.undone_at IS NULL AND a.status = 'accepted' AND a.source IN ('human', 'import', 'rule')"
#: the interactions with a current accepted non-judge label (one pass over the labels).
ANNOTATED_SQL = f"i.id IN (SELECT a.interaction_id FROM annotations a WHERE {_HUMAN})"
#: each labelled interaction's current rating, computed once over the labels, not per row.
_RATED = (
    "SELECT interaction_id, rating FROM (SELECT a.interaction_id, a.rating, row_number() OVER ("
    "PARTITION BY a.interaction_id ORDER BY a.created_at DESC, a.rowid DESC) AS n "
    f"FROM annotations a WHERE {_HUMAN} AND a.rating IS NOT NULL) WHERE n = 1"
)
MIN_RATING_SQL = f"i.id IN (SELECT interaction_id FROM ({_RATED}) WHERE rating >= ?)"
MAX_RATING_SQL = f"i.id IN (SELECT interaction_id FROM ({_RATED}) WHERE rating <= ?)"
#: the status of each interaction's newest judge label (over the judge labels only).
_JUDGED = (
    "SELECT a.interaction_id FROM annotations a WHERE a.source = 'judge' AND a.undone_at IS NULL "
    "AND a.status {status} AND a.created_at = (SELECT max(b.created_at) FROM annotations b "
    "WHERE b.interaction_id = a.interaction_id AND b.source = 'judge' AND b.undone_at IS NULL)"
)
JUDGE_ANY_SQL = "i.id IN (SELECT a.interaction_id FROM annotations a WHERE a.source = 'judge' AND a.undone_at IS NULL)"
JUDGE_STATUS_SQL = "i.id IN (" + _JUDGED.format(status="= ?") + ")"
PROPOSED_SQL = "i.id IN (" + _JUDGED.format(status="= 'proposed'") + ")"
TAG_SQL = (
    "i.id IN (SELECT a.interaction_id FROM annotations a, json_each(a.tags_json) t "
    "WHERE a.undone_at IS NULL AND a.source != 'judge' AND t.value = ? "
    "AND a.version = (SELECT max(b.version) FROM annotations b WHERE b.interaction_id = a.interaction_id "
    "AND b.source = a.source AND b.annotator = a.annotator AND b.undone_at IS NULL))"
)

SORTS: dict[str, tuple[str, str]] = {
    "newest": ("i.created_at", "DESC"),
    "oldest": ("i.created_at", "ASC"),
    "rating_desc": (f"coalesce({RATING_SQL}, 0)", "DESC"),
    "rating_asc": (f"coalesce({RATING_SQL}, 6)", "ASC"),
    "slowest": ("coalesce(i.duration_ms, 0)", "DESC"),
    "tokens": ("coalesce(i.total_tokens, 0)", "DESC"),
}


class BadFilter(WilsonError):
    """A filter value the dashboard cannot use."""


def _tupled(value: Any) -> tuple[str, ...]:
    return tuple(v for v in (value or ()) if v)


@frozen
class Filters:
    """The Training tab's filters (all optional; combined with AND)."""

    call_types: tuple[str, ...] = field(default=(), converter=_tupled)
    models: tuple[str, ...] = field(default=(), converter=_tupled)
    providers: tuple[str, ...] = field(default=(), converter=_tupled)
    status: str | None = None
    min_rating: int | None = None
    max_rating: int | None = None
    annotated: bool | None = None
    tag: str | None = None
    run_id: str | None = None
    since: str | None = None
    until: str | None = None
    q: str | None = None
    judge: str | None = None
    sort: str = "newest"

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> Filters:
        """From URL query parameters (a starlette ``QueryParams`` or a dict of lists/strings)."""

        def many(name: str) -> list[str]:
            getter = getattr(query, "getlist", None)
            values = getter(name) if getter else query.get(name) or []
            if isinstance(values, str):
                values = [values]
            out: list[str] = []
            for value in values:
                out += [v.strip() for v in value.split(",") if v.strip()]
            return out

        def one(name: str) -> str | None:
            value = query.get(name)
            if isinstance(value, list):
                value = value[-1] if value else None
            value = (value or "").strip()
            return value or None

        def stars(name: str) -> int | None:
            value = one(name)
            if value is None:
                return None
            if not (value.isascii() and value.isdigit() and len(value) < 3) or not 1 <= int(value) <= 5:
                raise BadFilter(f"{name} must be a star rating 1-5, got {value!r}")
            return int(value)

        annotated = one("annotated")
        if annotated not in (None, "yes", "no"):
            raise BadFilter(f"annotated must be yes or no, got {annotated!r}")
        judge = one("judge")
        if judge not in (None, "proposed", "accepted", "rejected", "any", "none"):
            raise BadFilter(f"judge must be proposed, accepted, rejected, any or none, got {judge!r}")
        sort = one("sort") or "newest"
        if sort not in SORTS:
            raise BadFilter(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        return cls(
            call_types=many("call_type"),
            models=many("model"),
            providers=many("provider"),
            status=one("status"),
            min_rating=stars("min_rating"),
            max_rating=stars("max_rating"),
            annotated=None if annotated is None else annotated == "yes",
            tag=one("tag"),
            run_id=one("run"),
            since=one("since"),
            until=one("until"),
            q=one("q"),
            judge=judge,
            sort=sort,
        )

    def where(self, *, counting: bool = False) -> tuple[str, list[Any]]:
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

        if self.call_types:
            among("i.call_type", self.call_types)
        if self.models:
            among("i.model", self.models)
        if self.providers:
            among("i.provider", self.providers)
        if self.status:
            conditions.append("i.status = ?")
            params.append(self.status)
        if self.run_id:
            conditions.append("i.run_id = ?")
            params.append(self.run_id)
        if self.since:
            conditions.append("i.created_at >= ?")
            params.append(self.since)
        if self.until:
            conditions.append("i.created_at < ?")
            # a bare date means "up to the end of that day"
            params.append(self.until + "T99" if len(self.until) == 10 else self.until)
        if self.min_rating is not None:
            conditions.append(MIN_RATING_SQL if counting else f"{RATING_SQL} >= ?")
            params.append(self.min_rating)
        if self.max_rating is not None:
            conditions.append(MAX_RATING_SQL if counting else f"{RATING_SQL} <= ?")
            params.append(self.max_rating)
        if self.annotated is not None:
            conditions.append(ANNOTATED_SQL if self.annotated else f"NOT {ANNOTATED_SQL}")
        if self.tag:
            conditions.append(TAG_SQL)
            params.append(self.tag)
        if self.judge == "any":
            conditions.append(JUDGE_ANY_SQL)
        elif self.judge == "none":
            conditions.append(f"NOT {JUDGE_ANY_SQL}")
        elif self.judge:
            conditions.append(JUDGE_STATUS_SQL)
            params.append(self.judge)
        if self.q:
            query = search.match_query(self.q)
            if query is not None:
                conditions.append(f"i.rowid IN ({search.search_rowids_sql()})")
                params.append(query)
        return " AND ".join(conditions), params

    def export_options(self, fmt: str, **extra: Any) -> Any:
        """The :class:`ExportOptions` with the filters an export understands."""
        from wilson_core.exporting import ExportOptions

        return ExportOptions(
            format=fmt,
            min_rating=self.min_rating,
            call_types=self.call_types,
            models=self.models,
            providers=self.providers,
            since=self.since,
            until=_day_after(self.until) if self.until and len(self.until) == 10 else self.until,
            tags=(self.tag,) if self.tag else (),
            **extra,
        )


FROM = "interactions i LEFT JOIN runs r ON r.id = i.run_id"
COLUMNS = (
    "i.rowid AS rid, i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, i.status, "
    f"substr(i.user_prompt, 1, {PREVIEW_CHARS}) AS prompt, length(i.user_prompt) AS prompt_chars, "
    f"substr(i.response_content, 1, {PREVIEW_CHARS}) AS response, "
    "length(i.response_content) AS response_chars, i.tool_calls_json, i.error, "
    "i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms, i.created_at"
)


def _day_after(day: str) -> str:
    """The "to" date is inclusive in the page; the export's ``until`` is exclusive."""
    from datetime import date, timedelta

    try:
        return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    except ValueError:
        raise BadFilter(f"until must be a date YYYY-MM-DD, got {day!r}") from None


def encode_cursor(value: Any, rowid: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, rowid]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, rowid = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(rowid, int):
            raise ValueError
        return value, rowid
    except (ValueError, TypeError):
        raise BadFilter("the page cursor is not valid; reload the list") from None


def needs_search_sync(filters: Filters) -> bool:
    return bool(filters.q and search.match_query(filters.q))


def page(
    conn: sqlite3.Connection, filters: Filters, *, cursor: str | None = None, limit: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of rows (newest first by default) and the cursor of the next page."""
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    if filters.sort in ("rating_desc", "rating_asc"):
        rows = _rating_rows(conn, filters, cursor, limit + 1)
    else:
        key, direction = SORTS[filters.sort]
        where, params = filters.where()
        if cursor:
            value, rowid = decode_cursor(cursor)
            op = "<" if direction == "DESC" else ">"
            where += f" AND ({key}, i.rowid) {op} (?, ?)"
            params += [value, rowid]
        sql = (
            f"SELECT {COLUMNS}, {key} AS sort_value FROM {FROM} WHERE {where} "
            f"ORDER BY {key} {direction}, i.rowid {direction} LIMIT ?"
        )
        rows = conn.execute(sql, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    labels = labels_for(conn, [row["id"] for row in rows])
    items = []
    for row in rows:
        human, judge = labels.get(row["id"], (None, None))
        calls = json.loads(row["tool_calls_json"] or "[]")
        items.append(
            {
                "id": row["id"],
                "run_id": row["run_id"],
                "sequence_num": row["sequence_num"],
                "call_type": row["call_type"],
                "model": row["model"],
                "provider": row["provider"],
                "status": row["status"],
                "error": row["error"],
                "prompt": row["prompt"],
                "prompt_chars": row["prompt_chars"] or 0,
                "response": row["response"],
                "response_chars": row["response_chars"] or 0,
                "tool_calls": [c.get("name") for c in calls],
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
                "total_tokens": row["total_tokens"],
                "duration_ms": row["duration_ms"],
                "created_at": row["created_at"],
                "label": label_dict(human),
                "judge": label_dict(judge),
            }
        )
    next_cursor = encode_cursor(rows[-1]["sort_value"], rows[-1]["rid"]) if more and rows else None
    return {"items": items, "next_cursor": next_cursor}


def _rating_rows(
    conn: sqlite3.Connection, filters: Filters, cursor: str | None, wanted: int
) -> list[sqlite3.Row]:
    """Rows sorted by rating in two keyset segments: the rated ones (sorted over the labels
    only), then the unrated ones in rowid order, instead of a rating lookup for every row.

    The sort value of an unrated row is 0 (best first) or 6 (worst first), as if it sorted
    after every rated one, so a cursor says which segment it points into.
    """
    descending = filters.sort == "rating_desc"
    direction, op, unrated = ("DESC", "<", 0) if descending else ("ASC", ">", 6)
    where, params = filters.where()
    value, rowid = decode_cursor(cursor) if cursor else (None, None)
    rows: list[sqlite3.Row] = []
    if value != unrated:
        condition, extra = "", []
        if value is not None:
            condition, extra = f" AND (eff.rating, i.rowid) {op} (?, ?)", [value, rowid]
        rows = conn.execute(
            f"SELECT {COLUMNS}, eff.rating AS sort_value FROM ({_RATED}) eff "
            f"JOIN interactions i ON i.id = eff.interaction_id LEFT JOIN runs r ON r.id = i.run_id "
            f"WHERE {where}{condition} ORDER BY eff.rating {direction}, i.rowid {direction} LIMIT ?",
            [*params, *extra, wanted],
        ).fetchall()
        rowid = None
    if len(rows) < wanted:
        condition, extra = "", []
        if rowid is not None:
            condition, extra = f" AND i.rowid {op} ?", [rowid]
        rows += conn.execute(
            f"SELECT {COLUMNS}, {unrated} AS sort_value FROM {FROM} "
            f"WHERE {where} AND i.id NOT IN (SELECT interaction_id FROM ({_RATED})){condition} "
            f"ORDER BY i.rowid {direction} LIMIT ?",
            [*params, *extra, wanted - len(rows)],
        ).fetchall()
    return rows


def count(conn: sqlite3.Connection, filters: Filters, extra: str | None = None) -> int:
    where, params = filters.where(counting=True)
    if extra:
        where += f" AND {extra}"
    return conn.execute(f"SELECT count(*) FROM {FROM} WHERE {where}", params).fetchone()[0]


def labels_for(
    conn: sqlite3.Connection, ids: Sequence[str]
) -> dict[str, tuple[Annotation | None, Annotation | None]]:
    """(effective human label, newest judge label) for each interaction id."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = conn.execute(
        f"SELECT * FROM annotations WHERE interaction_id IN ({marks}) AND undone_at IS NULL "
        "ORDER BY version",
        list(ids),
    ).fetchall()
    streams: dict[tuple[str, str, str], Annotation] = {}
    for row in rows:  # ordered by version: the last one per stream is current
        streams[(row["interaction_id"], row["source"], row["annotator"])] = annotations.annotation_from_row(row)
    per: dict[str, list[Annotation]] = {}
    for (interaction_id, _, _), label in streams.items():
        per.setdefault(interaction_id, []).append(label)
    result = {}
    for interaction_id, labels in per.items():
        labels.sort(key=lambda a: a.created_at, reverse=True)
        judge = next((a for a in labels if a.source == "judge"), None)
        result[interaction_id] = (annotations.effective_of(labels), judge)
    return result


def label_dict(label: Annotation | None) -> dict[str, Any] | None:
    if label is None:
        return None
    return {
        "rating": label.rating,
        "preference": label.preference,
        "pair_id": label.pair_id,
        "tags": list(label.tags),
        "notes": label.notes,
        "corrected_response": label.corrected_response,
        "source": label.source,
        "annotator": label.annotator,
        "status": label.status,
        "version": label.version,
        "created_at": label.created_at,
    }


def facets(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The values the filter menus offer (one scan over interactions)."""
    call_types: set[str] = set()
    models: set[str] = set()
    providers: set[str] = set()
    statuses: set[str] = set()
    for row in conn.execute(
        "SELECT call_type, model, provider, status FROM interactions GROUP BY 1, 2, 3, 4"
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
