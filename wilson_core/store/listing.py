"""Listing interactions (``wilson logs``) and resolving short ids, git-style.

Two named reads of the store:

- :func:`list_interactions`: interactions newest first, with the label that
  counts (rating and tags, human labels only), filtered by :class:`LogFilter`.
- :func:`resolve_id`: the full id of an interaction or run from a unique
  prefix of at least :data:`MIN_PREFIX` characters; an ambiguous prefix is an
  :class:`AmbiguousId` error that lists the candidates.

Times are compared as datetimes (``julianday``), never as text, so
``2026-01-02T10:00:00+02:00`` and ``2026-01-02T08:00:00Z`` are the same moment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from wilson_core.errors import NotFound, WilsonError

if TYPE_CHECKING:
    from .store import Store

#: the fewest characters of an id that may name it.
MIN_PREFIX = 6
#: the fewest characters of an id tables show (more when needed to be unique).
SHORT = 8
#: how many candidates an ambiguity error lists.
MAX_CANDIDATES = 10

KINDS = ("interaction", "run")


class AmbiguousId(WilsonError):
    """A prefix that several ids start with."""


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def short_ids(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """For each id, its shortest prefix (at least :data:`SHORT` characters) that names only it.

    Unique among interactions *and* runs, so it works in every command,
    ``wilson show`` included.  Ids are time-ordered, so calls made in the same
    second share their first characters: those get longer prefixes, as git does.
    """
    conn = store.connection()
    result = {}
    for full_id in ids:
        longest = 0
        for table in ("interactions", "runs"):
            for sql in (f"SELECT id FROM {table} WHERE id < ? ORDER BY id DESC LIMIT 1",
                        f"SELECT id FROM {table} WHERE id > ? ORDER BY id LIMIT 1"):
                row = conn.execute(sql, (full_id,)).fetchone()
                if row is not None:
                    longest = max(longest, _common_prefix(full_id, row[0]))
        result[full_id] = full_id[: max(SHORT, longest + 1)]
    return result


# -- short ids ------------------------------------------------------------


def _prefix_range(prefix: str) -> tuple[str, str]:
    """``id >= low AND id < high`` selects exactly the ids starting with ``prefix`` (and uses the index)."""
    return prefix, prefix + "\U0010ffff"


def _candidates(store: Store, kind: str, prefix: str) -> list[dict[str, Any]]:
    low, high = _prefix_range(prefix)
    if kind == "interaction":
        sql = (
            "SELECT id, created_at AS at, provider || ':' || model AS what FROM interactions "
            "WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
        )
    else:
        sql = (
            "SELECT id, started_at AS at, call_type AS what FROM runs "
            "WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
        )
    rows = store.connection().execute(sql, (low, high, MAX_CANDIDATES + 1))
    return [{"kind": kind, **dict(row)} for row in rows]


def _exists(store: Store, kind: str, full_id: str) -> bool:
    table = "interactions" if kind == "interaction" else "runs"
    sql = f"SELECT 1 FROM {table} WHERE id = ?"
    return store.connection().execute(sql, (full_id,)).fetchone() is not None


def resolve_id(store: Store, text: str, kind: str | Sequence[str] = "interaction") -> str:
    """The full id that ``text`` names: itself when it is an id, else the one id it is a prefix of.

    ``kind`` is ``"interaction"``, ``"run"`` or both (a sequence; the first
    kind wins an exact match).  Raises :class:`~wilson_core.errors.NotFound`
    when nothing matches or the prefix is shorter than :data:`MIN_PREFIX`, and
    :class:`AmbiguousId` (listing the candidates) when several ids match.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown id kind {k!r}")
    text = (text or "").strip()
    what = " or ".join(kinds)
    for k in kinds:
        if text and _exists(store, k, text):
            return text
    if len(text) < MIN_PREFIX:
        raise NotFound(
            f"no {what} with id {text!r} in {store.path} "
            f"(a short id needs at least {MIN_PREFIX} characters)"
        )
    found = [row for k in kinds for row in _candidates(store, k, text)]
    if not found:
        raise NotFound(f"no {what} with id {text!r} in {store.path} (and no id starts with it)")
    if len(found) == 1:
        return str(found[0]["id"])
    lines = [f"  {row['kind']} {row['id']}  {row['at'] or ''}  {row['what'] or ''}"
             for row in found[:MAX_CANDIDATES]]
    more = "\n  ..." if len(found) > MAX_CANDIDATES else ""
    raise AmbiguousId(
        f"{text!r} is the start of several ids; give more characters:\n" + "\n".join(lines) + more
    )


def resolve_ids(store: Store, texts: Sequence[str], kind: str | Sequence[str] = "interaction") -> list[str]:
    """:func:`resolve_id` for each of ``texts``."""
    return [resolve_id(store, text, kind) for text in texts]


# -- times ----------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A timezone-aware datetime from what a person typed.

    ISO 8601 dates and times (``2026-12-03``, ``2026-12-03 14:00``,
    ``2026-12-03T14:00:00+01:00``, ``...Z``); a time without a zone is local
    time.  Or an age: ``30m``, ``2h``, ``7d``, ``1w`` ago.
    """
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text or "")
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    cleaned = (text or "").strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise WilsonError(
            f"not a date or time: {text!r} (use 2026-12-03, 2026-12-03T14:00, "
            "2026-12-03T14:00:00+01:00 or an age such as 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as the person meant it
    return moment.astimezone(timezone.utc)


def _sql_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


# -- listing --------------------------------------------------------------


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@frozen
class LogFilter:
    """What ``wilson logs`` shows: every field narrows the list (``None`` / empty: no filter)."""

    models: tuple[str, ...] = field(default=(), converter=_texts)
    call_types: tuple[str, ...] = field(default=(), converter=_texts)
    providers: tuple[str, ...] = field(default=(), converter=_texts)
    statuses: tuple[str, ...] = field(default=(), converter=_texts)
    tags: tuple[str, ...] = field(default=(), converter=_texts)
    run_id: str | None = None
    rating_min: int | None = None
    rating_max: int | None = None
    unrated: bool = False
    since: datetime | None = None
    until: datetime | None = None
    query: str | None = None
    limit: int | None = 20


#: the label that counts (view ``effective_labels``), when accepted: a person's, a rule's
#: or an accepted judge label; judge proposals waiting for a decision are not shown as ratings.
LABEL_JOIN = "LEFT JOIN effective_labels l ON l.interaction_id = i.id AND l.tier <= 1"


def _in(column: str, name: str, values: tuple[str, ...], params: dict[str, Any]) -> str:
    keys = []
    for index, value in enumerate(values):
        params[f"{name}{index}"] = value
        keys.append(f":{name}{index}")
    return f"{column} IN ({', '.join(keys)})"


def list_interactions(store: Store, options: LogFilter) -> list[dict[str, Any]]:
    """Interactions matching ``options``, newest first: one dict per row.

    Keys: ``id``, ``short_id``, ``run_id``, ``sequence_num``, ``created_at``,
    ``call_type``, ``provider``, ``model``, ``status``, ``error``,
    ``user_prompt``, ``response_content``, ``tool_calls`` (names),
    ``input_tokens``, ``output_tokens``, ``total_tokens``, ``duration_ms``,
    ``rating``, ``tags``.
    """
    from . import search

    rating_sql, label_join = "l.rating", LABEL_JOIN
    params: dict[str, Any] = {}
    conditions = ["(r.deleted_at IS NULL)"]
    if options.models:
        conditions.append(_in("i.model", "model", options.models, params))
    if options.call_types:
        conditions.append(_in("i.call_type", "call_type", options.call_types, params))
    if options.providers:
        conditions.append(_in("i.provider", "provider", options.providers, params))
    if options.statuses:
        conditions.append(_in("i.status", "status", options.statuses, params))
    if options.run_id:
        params["run_id"] = options.run_id
        conditions.append("i.run_id = :run_id")
    if options.since is not None:
        params["since"] = _sql_time(options.since)
        conditions.append("julianday(i.created_at) >= julianday(:since)")
    if options.until is not None:
        params["until"] = _sql_time(options.until)
        conditions.append("julianday(i.created_at) < julianday(:until)")
    if options.unrated:
        conditions.append(f"{rating_sql} IS NULL")
    if options.rating_min is not None:
        params["rating_min"] = int(options.rating_min)
        conditions.append(f"{rating_sql} >= :rating_min")
    if options.rating_max is not None:
        params["rating_max"] = int(options.rating_max)
        conditions.append(f"{rating_sql} <= :rating_max")
    for index, tag in enumerate(options.tags):
        params[f"tag{index}"] = tag
        conditions.append(
            f"EXISTS (SELECT 1 FROM json_each(coalesce(l.tags_json, '[]')) WHERE value = :tag{index})"
        )
    if options.query is not None:
        query = search.match_query(options.query)
        if query is None:
            return []
        search.sync(store)
        params["match"] = query
        conditions.append(f"i.rowid IN ({search.search_rowids_sql().replace('?', ':match')})")
    limit = "" if options.limit is None or options.limit <= 0 else f" LIMIT {int(options.limit)}"
    sql = (
        "SELECT i.id, i.run_id, i.sequence_num, i.created_at, i.call_type, i.provider, i.model, "
        "i.status, i.error, i.user_prompt, i.response_content, i.tool_calls_json, "
        "i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms, "
        f"{rating_sql} AS rating, l.tags_json, l.source AS label_source "
        f"FROM interactions i LEFT JOIN runs r ON r.id = i.run_id {label_join} "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY julianday(i.created_at) DESC, i.rowid DESC{limit}"
    )
    rows = []
    for row in store.connection().execute(sql, params):
        item = dict(row)
        calls = json.loads(item.pop("tool_calls_json") or "[]")
        item["tool_calls"] = [call.get("name") for call in calls if isinstance(call, dict)]
        item["tags"] = json.loads(item.pop("tags_json") or "[]")
        rows.append(item)
    shorts = short_ids(store, [r["id"] for r in rows] + [r["run_id"] for r in rows])
    for item in rows:
        item["short_id"] = shorts[item["id"]]
        item["short_run_id"] = shorts[item["run_id"]]
    return rows
