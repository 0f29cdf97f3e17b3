"""What to export: :class:`ExportOptions`, a frozen record checked when it is built."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
from attrs import field, frozen

from wilson_core.errors import WilsonError

GRANULARITIES = ("interaction", "run")


class ExportError(WilsonError):
    """An export that cannot be done as asked (bad option, unwritable path, ...)."""


class NothingMatched(WilsonError):
    """The filters matched nothing: an empty file and a manifest saying 0 were written."""

    exit_code = 3


class ValidationFailed(WilsonError):
    """``wilson export validate`` found lines that fail."""


def _tupled(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def normalize_time(value: str | None, flag: str) -> str | None:
    """An ISO date or date-time, as the UTC text the store compares against."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(
            f"{flag} {value!r} is not an ISO date or date-time (e.g. 2026-11-01 or 2026-11-01T08:00)"
        ) from None
    if len(text) == 10:  # a bare date: compare as text, it sorts before any time that day
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat(timespec="microseconds")


@frozen
class ExportOptions:
    """Everything that decides which lines an export writes.

    ``format`` names an exporter (``wilson.exporters`` entry point).  Filters
    narrow the interactions; ``granularity`` says whether one example is one
    call (``interaction``) or one whole agent run (``run``).  See
    ``docs/export.md`` for the meaning of every field.
    """

    format: str
    min_rating: int | None = None
    call_types: tuple[str, ...] = field(default=(), converter=_tupled)
    models: tuple[str, ...] = field(default=(), converter=_tupled)
    providers: tuple[str, ...] = field(default=(), converter=_tupled)
    since: str | None = None
    until: str | None = None
    tags: tuple[str, ...] = field(default=(), converter=_tupled)
    include_judge: bool = False
    granularity: str = "interaction"
    eval_split: float | None = None
    seed: int = 0
    dedup: bool = False
    max_tokens: int | None = None
    tokenizer: str | None = None
    redact: bool = False
    kto_desirable: int = 4
    kto_undesirable: int = 2
    #: keep examples longer than ``max_tokens`` (they are still reported).
    keep_long: bool = False
    #: build DPO pairs from answers to the same context rated high and low.
    harvest_pairs: bool = True
    #: options passed to the exporter's constructor.
    exporter_options: Mapping[str, Any] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.format:
            raise ExportError("no export format given")
        if self.min_rating is not None and not 1 <= int(self.min_rating) <= 5:
            raise ExportError(f"--min-rating must be between 1 and 5 (got {self.min_rating})")
        if self.granularity not in GRANULARITIES:
            raise ExportError(
                f"--granularity must be one of {', '.join(GRANULARITIES)} (got {self.granularity!r})"
            )
        if self.eval_split is not None and not 0.0 < float(self.eval_split) < 1.0:
            raise ExportError(
                f"--eval-split must be a fraction between 0 and 1, exclusive (got {self.eval_split})"
            )
        if self.max_tokens is not None and int(self.max_tokens) < 1:
            raise ExportError(f"--max-tokens must be a positive number (got {self.max_tokens})")
        for name in ("kto_desirable", "kto_undesirable"):
            if not 1 <= int(getattr(self, name)) <= 5:
                raise ExportError(f"{name} must be a star rating 1-5 (got {getattr(self, name)})")
        if self.kto_undesirable >= self.kto_desirable:
            raise ExportError(
                f"kto_undesirable ({self.kto_undesirable}) must be below "
                f"kto_desirable ({self.kto_desirable})"
            )
        object.__setattr__(self, "since", normalize_time(self.since, "--since"))
        object.__setattr__(self, "until", normalize_time(self.until, "--until"))

    def describe(self) -> dict[str, Any]:
        """The options as JSON-ready data (for the manifest)."""
        data = attrs.asdict(self, recurse=False)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data["exporter_options"] = dict(self.exporter_options)
        return data
