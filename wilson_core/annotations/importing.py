"""Import labels from CSV or JSONL files (an annotation source of kind ``import``).

Columns / keys: ``id`` (the interaction id, required), ``rating`` (1-5),
``preference`` (chosen, rejected, neutral), ``tags`` (a JSON list, or text
separated by ``;`` or ``,``), ``notes``, ``corrected_response``.  Empty cells
mean "no change".  The whole file is checked first: if any line is wrong,
nothing is written and the error names every bad line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused, WilsonError

from .changes import _Change
from .hooks import _added
from .versions import _append, _check_interaction, _write

if TYPE_CHECKING:
    from wilson_core.records import Annotation
    from wilson_core.store import Store

COLUMNS = ("id", "rating", "preference", "tags", "notes", "corrected_response")
MAX_REPORTED = 20


def read_rows(path: str | os.PathLike[str], fmt: str = "auto") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-empty row of a CSV or JSONL file."""
    path = Path(path)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise WilsonError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if fmt == "csv":
            reader = csv.DictReader(handle, dialect="excel-tab" if path.suffix.lower() == ".tsv" else "excel")
            if reader.fieldnames is None:
                return
            unknown = [c for c in reader.fieldnames if c not in COLUMNS]
            if unknown or "id" not in reader.fieldnames:
                raise AnnotationRefused(
                    f"{path}:1: the header must name the column id and may name "
                    f"{', '.join(COLUMNS[1:])}; got {', '.join(reader.fieldnames)}"
                )
            for row in reader:
                if None in row:
                    raise AnnotationRefused(f"{path}:{reader.line_num}: more cells than header columns")
                if any((v or "").strip() for v in row.values()):
                    yield reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}
        else:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, {"__error__": f"not valid JSON ({exc.msg} at column {exc.colno})"}
                    continue
                if not isinstance(data, dict):
                    yield number, {"__error__": f"expected a JSON object, got {type(data).__name__}"}
                    continue
                yield number, data


def _parse_tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = json.loads(text)
            if not isinstance(parsed, list):
                raise ValueError("tags must be a list")
            return parsed
        separator = ";" if ";" in text else ","
        return [t.strip() for t in text.split(separator) if t.strip()]
    raise ValueError(f"tags must be a list or text, got {type(value).__name__}")


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    """The annotate() keyword arguments of one row (validated), or ValueError/AnnotationRefused."""

    if "__error__" in row:
        raise ValueError(row["__error__"])
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} (expected {', '.join(COLUMNS)})")
    if not isinstance(row.get("id"), str) or not row["id"].strip():
        raise ValueError("missing the interaction id (field 'id')")
    fields: dict[str, Any] = {}
    if row.get("rating") not in (None, ""):
        fields["rating"] = row["rating"]
    if row.get("preference") not in (None, ""):
        fields["preference"] = str(row["preference"]).strip()
    if row.get("tags") not in (None, "", []):
        fields["add_tags"] = _parse_tags(row["tags"])
    for name in ("notes", "corrected_response"):
        if row.get(name) not in (None, ""):
            if not isinstance(row[name], str):
                raise ValueError(f"{name} must be text")
            fields[name] = row[name]
    if not fields:
        raise ValueError("no label field set (rating, preference, tags, notes or corrected_response)")
    _Change.build(**fields)  # raises AnnotationRefused on a bad value
    return fields


def import_file(
    store: Store, path: str | os.PathLike[str], *, fmt: str = "auto", annotator: str = "import"
) -> list[Annotation]:
    """Check every line of ``path``, then write all labels (source ``import``) in one transaction.

    :raises AnnotationRefused: any bad line (all of them are listed with line
        numbers); nothing was written.
    """
    conn = store.connection()
    planned: list[tuple[str, dict[str, Any]]] = []
    errors: list[str] = []
    for number, row in read_rows(path, fmt):
        try:
            fields = _fields(row)
            interaction_id = row["id"].strip()
            _check_interaction(conn, interaction_id)
        except (ValueError, WilsonError) as exc:
            errors.append(f"line {number}: {exc}")
            continue
        planned.append((interaction_id, fields))
    if errors:
        shown = errors[:MAX_REPORTED]
        more = f"\n  ... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise AnnotationRefused(
            f"{path}: {len(errors)} bad line(s), nothing was imported:\n  " + "\n  ".join(shown) + more
        )
    if not planned:
        raise AnnotationRefused(f"{path}: no labels to import (the file has no rows)")
    written = []
    with _write(store) as conn:
        for interaction_id, fields in planned:
            change = _Change.build(**fields)
            written.append(_append(conn, interaction_id, change, "import", annotator, "accepted"))
    _added(store, written)
    return written
