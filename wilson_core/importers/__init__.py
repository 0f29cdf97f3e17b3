"""Importers: existing LLM logs into the Wilson store (capture sources).

Each importer reads and checks its whole file first, building records; only
when every row is good are they written, in one transaction, so a broken file
writes nothing.  Ids are derived from the source (path and row id, or the
content of a line), and every insert is ``INSERT OR IGNORE``, so importing the
same file twice adds nothing.

- :mod:`wilson_core.importers.wilson_db`: an Open Accountant Wilson ``data.db``.
- :mod:`wilson_core.importers.openai_jsonl`: OpenAI chat-format JSONL.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from attrs import Factory, define

from wilson_core.errors import RecordError
from wilson_core.records import Annotation, Interaction, Run, ToolResult, utcnow

if TYPE_CHECKING:
    from wilson_core.store import Store

#: how many problems an error message lists before "... and N more".
MAX_REPORTED = 20


def stable_id(*parts: object) -> str:
    """A 32-hex-digit id derived from ``parts`` (the same parts give the same id)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def iso_time(value: Any) -> str:
    """A timestamp from a log (ISO text, SQLite ``datetime()`` text, epoch s or ms) as ISO-8601 UTC.

    :raises ValueError: the value is not a time.
    """
    if value is None or value == "":
        return utcnow()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if value > 1e11 else float(value)
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
        else:
            return iso_time(number)
    else:
        raise ValueError(f"not a time: {value!r}")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


@define
class Pair:
    """A preference pair to import: ``chosen_id`` was preferred over ``rejected_id``."""

    id: str
    chosen_id: str
    rejected_id: str
    created_at: str
    annotator: str


@define
class ImportBatch:
    """Everything read from one source, checked, ready to write in one transaction."""

    source: str
    runs: list[Run] = Factory(list)
    interactions: list[Interaction] = Factory(list)
    tool_results: list[ToolResult] = Factory(list)
    annotations: list[Annotation] = Factory(list)
    pairs: list[Pair] = Factory(list)
    skipped: dict[str, int] = Factory(dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


class Problems:
    """Collects what is wrong with a source, to report all of it at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:MAX_REPORTED]
        more = len(self.items) - len(shown)
        text = "\n  ".join(shown)
        if more:
            text += f"\n  ... and {more} more"
        raise RecordError(
            f"cannot import {self.source}: {len(self.items)} problem(s), nothing was written:\n  {text}"
        )


_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (id, call_type, started_at, ended_at, metadata_json) "
    "VALUES (?, ?, ?, ?, ?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, kind, content) VALUES (?, ?, ?)"
_INSERT_ANNOTATION = (
    "INSERT OR IGNORE INTO annotations (id, interaction_id, rating, preference, pair_id, "
    "tags_json, notes, corrected_response, source, annotator, status, version, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PAIR = (
    "INSERT OR IGNORE INTO pairs (id, chosen_id, rejected_id, source, annotator, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_batch(store: Store, batch: ImportBatch) -> dict[str, Any]:
    """Write ``batch`` into ``store`` in one transaction; return how many rows were new."""
    from wilson_core.store.store import _INSERT_INTERACTION, _INSERT_TOOL_RESULT, transaction

    prepared = [store.interaction_row(i) for i in batch.interactions]
    added = {"runs": 0, "interactions": 0, "tool_results": 0, "annotations": 0, "pairs": 0}
    with store.writing() as conn, transaction(conn):
        for run in batch.runs:
            added["runs"] += conn.execute(
                _INSERT_RUN,
                (run.id, run.call_type, run.started_at, run.ended_at,
                 _json(run.metadata) if run.metadata else None),
            ).rowcount
        for row, blobs in prepared:
            for kind, content, digest in blobs:
                conn.execute(_INSERT_BLOB, (digest, kind, content))
            added["interactions"] += conn.execute(_INSERT_INTERACTION, row).rowcount
        for result in batch.tool_results:
            added["tool_results"] += conn.execute(
                _INSERT_TOOL_RESULT,
                (result.id, result.interaction_id, result.tool_call_id, result.name,
                 _json(result.arguments), result.content, int(result.is_error),
                 result.duration_ms, result.created_at),
            ).rowcount
        for pair in batch.pairs:
            added["pairs"] += conn.execute(
                _INSERT_PAIR,
                (pair.id, pair.chosen_id, pair.rejected_id, "import", pair.annotator, pair.created_at),
            ).rowcount
        for a in batch.annotations:
            added["annotations"] += conn.execute(
                _INSERT_ANNOTATION,
                (a.id, a.interaction_id, a.rating, a.preference, a.pair_id,
                 _json(list(a.tags)) if a.tags else None, a.notes, a.corrected_response,
                 a.source, a.annotator, a.status, a.version, a.created_at),
            ).rowcount
    return {
        "source": batch.source,
        "read": {
            "runs": len(batch.runs),
            "interactions": len(batch.interactions),
            "tool_results": len(batch.tool_results),
            "annotations": len(batch.annotations),
            "pairs": len(batch.pairs),
        },
        "added": added,
        "skipped": dict(batch.skipped),
    }
