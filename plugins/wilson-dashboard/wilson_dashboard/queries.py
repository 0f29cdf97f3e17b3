"""What the Training tab reads: filtered, sorted, keyset-paged interactions and their labels.

The filters are read and checked here; the SQL is the store's
(:mod:`wilson_core.store.browse`), and the label shown is the store's label
that counts (view ``effective_labels``), the same one the export uses.
Paging is by keyset (the last row's sort value and rowid), never OFFSET.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

from wilson_core.annotations import annotation_from_row
from wilson_core.errors import WilsonError
from wilson_core.records import Annotation
from wilson_core.store import browse, labels, search

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PREVIEW_CHARS = browse.PREVIEW_CHARS
SORTS = browse.SORTS
#: names of the extra conditions :func:`count` understands (the SQL is the store's).
ANNOTATED_SQL = "annotated"
PROPOSED_SQL = "proposed"


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
        """SQL conditions over ``i`` and ``r`` and their parameters (:func:`wilson_core.store.browse.where`)."""
        return browse.where(self, counting=counting)

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
    conn: Any, filters: Filters, *, cursor: str | None = None, limit: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of rows (newest first by default) and the cursor of the next page."""
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    rows = browse.page_rows(conn, filters, decode_cursor(cursor) if cursor else None, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    found = labels_for(conn, [row["id"] for row in rows])
    items = []
    for row in rows:
        human, judge = found.get(row["id"], (None, None))
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


def count(conn: Any, filters: Filters, extra: str | None = None) -> int:
    """How many interactions match; ``extra`` names one more condition (``"annotated"``, ``"proposed"``)."""
    return browse.count(conn, filters, extra)


def labels_for(conn: Any, ids: Sequence[str]) -> dict[str, tuple[Annotation | None, Annotation | None]]:
    """(the label that counts, the newest judge label) for each interaction id."""
    if not ids:
        return {}
    counted = labels.effective(conn, ids, browse.TIER)
    judged = labels.newest_judge_labels(conn, ids)
    result = {}
    for interaction_id in dict.fromkeys(ids):
        human, judge = counted.get(interaction_id), judged.get(interaction_id)
        if human is None and judge is None:
            continue
        result[interaction_id] = (
            annotation_from_row(human) if human is not None else None,
            annotation_from_row(judge) if judge is not None else None,
        )
    return result


def run_deleted_at(conn: Any, run_id: str) -> str | None:
    """When the run was deleted (``None``: it was not)."""
    return browse.run_deleted_at(conn, run_id)


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


def facets(conn: Any) -> dict[str, list[str]]:
    """The values the filter menus offer (one scan over interactions)."""
    return browse.facets(conn)
