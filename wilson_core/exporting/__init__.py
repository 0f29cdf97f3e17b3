"""Exporting training data: selection, filters, splits, dedup, redaction, manifest, atomic files.

The pipeline lives here (it is light: sqlite3, json, attrs); the formats are
named drivers in the ``wilson.exporters`` namespace (``sft``, ``dpo``,
``kto``, ``openai-chat`` from the ``wilson-exporters`` distribution, or your
own).  See ``docs/export.md``.

    from wilson_core.exporting import ExportOptions, run_export
    manifest = run_export(store, ExportOptions(format="sft", min_rating=4, redact=True), "train.jsonl")
"""

from __future__ import annotations

from .examples import Example
from .options import ExportError, ExportOptions
from .pipeline import SCHEMA_VERSION, count_records, iter_examples, iter_records, run_export
from .redaction import PatternRule, Redactor, builtin_rules
from .writer import eval_path, manifest_path

__all__ = [
    "SCHEMA_VERSION",
    "Example",
    "ExportError",
    "ExportOptions",
    "PatternRule",
    "Redactor",
    "builtin_rules",
    "count_records",
    "eval_path",
    "iter_examples",
    "iter_records",
    "manifest_path",
    "run_export",
]
