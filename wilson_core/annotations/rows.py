"""The records of this API (pairs, label versions) and their conversion from database rows."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from attrs import field, frozen

from wilson_core import converter
from wilson_core.records import Annotation, new_id, utcnow


@frozen
class Pair:
    """Two answers to the same context; ``chosen_id`` was preferred over ``rejected_id``."""

    chosen_id: str
    rejected_id: str
    source: str = "human"
    annotator: str = "local"
    id: str = field(factory=new_id)
    created_at: str = field(factory=utcnow)
    undone_at: str | None = None


@frozen
class LabelVersion:
    """One row of a label's history: the version and when (if ever) it was undone."""

    annotation: Annotation
    undone_at: str | None = None



def annotation_from_row(row: sqlite3.Row | dict[str, Any]) -> Annotation:
    """An :class:`Annotation` from an ``annotations`` row."""
    row = dict(row)
    return converter.structure(
        {
            "id": row["id"],
            "interaction_id": row["interaction_id"],
            "rating": row["rating"],
            "preference": row["preference"],
            "pair_id": row["pair_id"],
            "tags": json.loads(row["tags_json"] or "[]"),
            "notes": row["notes"],
            "corrected_response": row["corrected_response"],
            "source": row["source"],
            "annotator": row["annotator"],
            "status": row["status"],
            "version": row["version"],
            "created_at": row["created_at"],
        },
        Annotation,
    )


def pair_from_row(row: sqlite3.Row | dict[str, Any]) -> Pair:
    return converter.structure(
        {name: row[name] for name in ("id", "chosen_id", "rejected_id", "source", "annotator", "created_at", "undone_at")},
        Pair,
    )
