"""How records are written into rows: canonical JSON, SHA-256 hashes, the system prompt split off."""

from __future__ import annotations

import hashlib
import json
import json.encoder
import threading
from collections.abc import Sequence
from typing import Any

from wilson_core.records import ToolCall

# default=str: an app's odd parameter (an enum, a model class) must not lose the record.
# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


_local = threading.local()


def _c_encoder() -> Any:
    """This thread's C encoder with ``_ENCODER``'s options: ``encode`` builds one per call."""
    markers: dict[int, Any] = {}
    encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        markers, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    _local.c = (encoder, markers)
    return _local.c


def _dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the hashes of contexts and tools depend on it.

    The same text as ``_ENCODER.encode(value)``, with the C encoder kept per thread
    (its circular-reference markers are per call, so not shared between threads).
    """
    if json.encoder.c_make_encoder is None or type(value) is str:  # type: ignore[attr-defined]
        return _ENCODER.encode(value)
    try:
        encoder, markers = _local.c
    except AttributeError:
        encoder, markers = _c_encoder()
    try:
        return "".join(encoder(value, 0))
    except BaseException:
        _c_encoder()  # the markers may hold this call's containers: start clean
        raise


#: copied for each hash: cheaper than ``hashlib.sha256()``, which looks the algorithm up every time.
_SHA256 = hashlib.sha256()


def sha256(text: str) -> str:
    """The SHA-256 of ``text`` (UTF-8, lone surrogates kept) in hex: content-addressed ids."""
    digest = _SHA256.copy()  # (never updated itself, so safe to share between threads)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def context_hash_of(messages: Sequence[dict[str, Any]]) -> str:
    """The hash that says two calls saw the same conversation (system prompt and messages)."""
    system_hash, rest = _split_system(messages)
    return sha256((system_hash or "") + "|" + _dumps(rest))


def _is_plain_system(message: dict[str, Any] | None) -> bool:
    """A leading ``{"role": "system", "content": str}`` is stored once, as a blob."""
    return (
        message is not None
        and len(message) == 2
        and message.get("role") == "system"
        and isinstance(message.get("content"), str)
    )


def _split_system(messages: Sequence[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    if messages and _is_plain_system(messages[0]):
        return sha256(messages[0]["content"]), list(messages[1:])
    return None, list(messages)


def _tool_call_dict(call: ToolCall) -> dict[str, Any]:
    data = {"id": call.id, "name": call.name, "args": call.arguments}
    if call.raw_arguments is not None:
        data["raw_args"] = call.raw_arguments
    return data


class _Exact:
    """A number in a :class:`ToolsMemo` snapshot: equal only to a number of the same text.

    ``1 == 1.0 == True`` and ``0.0 == -0.0`` in Python, but they encode differently.
    """

    __slots__ = ("value",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        value = self.value
        if type(other) is not type(value):
            return False
        if type(value) is float:  # -0.0 == 0.0, but their text differs
            return repr(other) == repr(value)
        return other == value


_SNAPSHOT_LIMIT = 10_000  # nodes; bigger tool sets are encoded every time


def _snapshot(value: Any, budget: list[int]) -> Any:
    """A deep copy of clean JSON data that ``==`` the original only if it encodes the same."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("too big")
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is dict:
        return {key: _snapshot(item, budget) for key, item in value.items()}
    if kind is list:
        return [_snapshot(item, budget) for item in value]
    if kind is tuple:
        return tuple(_snapshot(item, budget) for item in value)
    if kind is int or kind is float or kind is bool:
        return _Exact(value)
    raise ValueError("not plain JSON")  # a str subclass, an object encoded by str(): no memo


class ToolsMemo:
    """The canonical JSON and SHA-256 of the tool list sent last.

    An app sends the same tools on every call; encoding and hashing them is
    the largest part of a capture.  The memo keeps a private deep snapshot
    (so an app editing its tool dicts in place is seen) and compares it with
    ``==``, which runs in C; numbers compare by type too, so a hit always
    encodes to the same text.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Any, str, str] | None = None

    def encode(self, tools: Any) -> tuple[str, str]:
        """``(_dumps(tools), sha256 of it)``."""
        last = self._last  # one read: another thread may replace it
        if last is not None and tools == last[0]:
            return last[1], last[2]
        text = _dumps(tools)
        digest = sha256(text)
        try:
            snapshot = _snapshot(tools, [_SNAPSHOT_LIMIT])
        except (ValueError, RecursionError):
            return text, digest
        self._last = (snapshot, text, digest)
        return text, digest
