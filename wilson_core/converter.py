"""The one converter between records and plain data (JSON, SQLite rows).

Private by design: every conversion goes through :func:`structure` and
:func:`unstructure`, so unknown keys are refused and errors read like
``Interaction: messages must be a list (got 'int')``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from . import records
from .errors import RecordError

T = TypeVar("T")

_converter = cattrs.Converter(forbid_extra_keys=True)

_RECORDS = (
    records.ToolCall,
    records.ToolResult,
    records.Interaction,
    records.Run,
    records.Annotation,
    records.ProviderResponse,
    records.Reply,
)

for _cls in _RECORDS:
    attrs.resolve_types(_cls)
    _converter.register_structure_hook(
        _cls, make_dict_structure_fn(_cls, _converter, _cattrs_forbid_extra_keys=True)
    )

# dicts of arbitrary JSON stay as they are.
_converter.register_structure_hook_func(
    lambda type_: type_ == dict[str, Any], lambda value, _: _expect_dict(value)
)


def _expect_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def structure(data: Any, cls: type[T]) -> T:
    """Build a ``cls`` record from plain data, or raise :class:`RecordError` saying what is wrong."""
    try:
        return _converter.structure(data, cls)
    except Exception as exc:  # cattrs raises ClassValidationError / BaseValidationError groups
        raise RecordError(_describe(exc, cls)) from None


def unstructure(record: Any) -> Any:
    """Turn a record (or list of records) into JSON-ready data."""
    return _converter.unstructure(record)


def dumps(record: Any) -> str:
    """A record as compact JSON text."""
    return json.dumps(unstructure(record), ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes, cls: type[T]) -> T:
    """Parse JSON text into a ``cls`` record."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{cls.__name__}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    return structure(data, cls)


def _describe(exc: Exception, cls: type) -> str:
    if isinstance(exc, (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError)):
        try:
            messages = cattrs.transform_error(exc, path=cls.__name__)
        except Exception:  # pragma: no cover - defensive
            messages = [str(exc)]
        return "; ".join(messages)
    return f"{cls.__name__}: {exc}"
