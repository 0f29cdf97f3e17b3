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
class StorePair:
    """A pair as the store writes it (with its source)."""

    id: str
    chosen_id: str
    rejected_id: str
    source: str
    annotator: str
    created_at: str
    undone_at: str | None = None


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


def write_batch(store: Store, batch: ImportBatch) -> dict[str, Any]:
    """Write ``batch`` into ``store`` in one transaction; return how many rows were new."""
    from wilson_core.store.writing import Batch

    pairs = [
        StorePair(p.id, p.chosen_id, p.rejected_id, "import", p.annotator, p.created_at)
        for p in batch.pairs
    ]
    added = store.write_batch(
        Batch(
            runs=batch.runs,
            interactions=batch.interactions,
            tool_results=batch.tool_results,
            annotations=batch.annotations,
            pairs=pairs,
        )
    )
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
