"""The one text boundary: every text and JSON value entering Wilson is made storable here.

The records (:mod:`wilson_core.records`) run these as attrs converters on every
text and JSON field, so whatever path a value takes into Wilson (the facade,
an SDK wrapper, the proxy, an importer, the CLI, the dashboard) it is cleaned
once, in one place:

- text is valid UTF-8: lone surrogates become U+FFFD, ``bytes`` are decoded
  as UTF-8 (invalid bytes become U+FFFD);
- NUL (U+0000) becomes U+FFFD: PostgreSQL refuses it in ``text`` and ``jsonb``,
  and the same record must be storable in every backend;
- JSON values are plain JSON: dict keys are text, tuples and sets are lists,
  non-finite floats and other objects are their text, nesting deeper than
  :data:`MAX_DEPTH` (or a cycle) is replaced by a marker text.

Clean text is returned as it is (the same object), so the capture path pays
only for a check: ``str.isascii`` (constant time) and a search for NUL.
"""

from __future__ import annotations

import math
import re
from typing import Any

REPLACEMENT = "\ufffd"
#: JSON nested deeper than this is stored as :data:`TOO_DEEP` (``json`` itself stops near 1000).
MAX_DEPTH = 200
TOO_DEEP = "<value nested too deeply to store>"

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: Any) -> Any:
    """``value`` as storable text: lone surrogates and NUL replaced by U+FFFD.

    Returns ``value`` itself when it is already clean; ``bytes`` are decoded
    as UTF-8; values that are not text are returned unchanged.
    """
    if type(value) is not str:
        if isinstance(value, str):
            value = str.__str__(value)
        elif isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        else:
            return value
    if value.isascii():  # constant time in CPython
        return value if "\x00" not in value else value.replace("\x00", REPLACEMENT)
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(REPLACEMENT, value)


def to_text(value: Any) -> str:
    """Any value as storable text: ``bytes`` decoded, other objects by ``str()``."""
    if isinstance(value, (str, bytes, bytearray)):
        return clean_text(value)
    if isinstance(value, memoryview):
        return clean_text(bytes(value))
    try:
        text = str(value)
    except Exception:  # an object whose __str__ fails must not lose the record
        text = f"<{type(value).__name__}>"
    return clean_text(text) if isinstance(text, str) else f"<{type(value).__name__}>"


def optional_text(value: Any) -> str | None:
    """:func:`to_text`, keeping ``None``."""
    if value is None:
        return None
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # the common case, inline
    return to_text(value)


def text_field(value: Any) -> Any:
    """Converter of a required text field: clean text; ``None`` stays (the store says what it needs)."""
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value
    return None if value is None else to_text(value)


def clean_json(value: Any) -> Any:
    """``value`` as plain, storable JSON data (the same object when already clean)."""
    if is_clean(value):  # the common case: a read-only pass, no copy
        return value
    try:
        return _clean(value, 0)
    except RecursionError:
        return TOO_DEEP


_INFINITIES = (math.inf, -math.inf)


def is_clean(value: Any) -> bool:
    """Whether ``value`` is already plain JSON of clean text (nothing to copy or replace).

    An iterative pass (no call per node): text is checked with ``isascii`` and
    a search for NUL, or one regular-expression scan; dict keys must be text;
    nesting deeper than :data:`MAX_DEPTH` (a cycle included) is not clean.
    """
    kind = type(value)
    if kind is str:
        return "\x00" not in value if value.isascii() else _UNSAFE.search(value) is None
    if kind is not dict and kind is not list and kind is not tuple:
        return kind is int or kind is bool or value is None or (
            kind is float and value == value and value not in _INFINITIES
        )
    search = _UNSAFE.search
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        container, depth = pop()
        if depth > MAX_DEPTH:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) is not str or ("\x00" in key if key.isascii() else search(key) is not None):
                    return False
            items = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind is str:
                if "\x00" in item if item.isascii() else search(item) is not None:
                    return False
            elif kind is dict or kind is list or kind is tuple:
                push((item, depth + 1))
            elif kind is float:
                if item != item or item in _INFINITIES:
                    return False
            elif not (kind is int or kind is bool or item is None):
                return False
    return True


def clean_dict(value: Any) -> dict[str, Any]:
    """Converter of a JSON-object field: a clean dict (``None`` is an empty one)."""
    if value is None:
        return {}
    cleaned = clean_json(value)
    if isinstance(cleaned, dict):
        return cleaned
    raise TypeError(f"expected an object, got {type(value).__name__}")


def _clean(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        if value.isascii() and "\x00" not in value:
            return value
        return clean_text(value)
    if kind is int or kind is bool or value is None:
        return value
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if kind is dict:
        return _clean_dict(value, depth)
    if kind is list or kind is tuple:
        return _clean_list(value, depth)
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int):  # bool and int subclasses (enums): their plain value
        return bool(value) if isinstance(value, bool) else int(value)
    if isinstance(value, float):
        return _clean(float(value), depth)
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return _clean_dict(dict(value), depth)
    if isinstance(value, (set, frozenset)):
        return _clean_list(sorted(value, key=repr), depth)
    return to_text(value)


def _clean_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    depth += 1
    for index, (key, item) in enumerate(value.items()):
        new_key = key if type(key) is str and key.isascii() and "\x00" not in key else _key(key)
        new_item = _clean(item, depth)
        if out is None and (new_key is not key or new_item is not item):
            out = dict(list(value.items())[:index])
        if out is not None:
            out[new_key] = new_item
    return value if out is None else out


def _key(key: Any) -> str:
    if isinstance(key, str):
        return clean_text(key)
    if key is None or isinstance(key, (bool, int, float)):
        import json

        return json.dumps(key)  # the text ``json.dumps`` would give the key
    return to_text(key)


def _clean_list(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
    out: list[Any] | None = None
    depth += 1
    for index, item in enumerate(value):
        new_item = _clean(item, depth)
        if out is None and new_item is not item:
            out = list(value[:index])
        if out is not None:
            out.append(new_item)
    if out is None:
        return value
    return tuple(out) if type(value) is tuple else out
