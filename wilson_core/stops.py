"""Stop sequences for local providers that generate token by token (``stop`` in OpenAI's sense).

Generation ends as soon as a stop sequence is complete, and the reply just before it (the
earliest one in the text so far); the stop text itself is never output.
While generating, the last ``len(longest stop) - 1`` characters are held back so that a
stop sequence split across tokens is never half streamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ParameterError


def stop_sequences(value: Any) -> tuple[str, ...]:
    """The request's ``stop`` parameter (a string, a list of strings or nothing) as a tuple."""
    if value is None:
        return ()
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise ParameterError(f"stop must be a string or a list of strings, not {value!r}", "stop")
    return tuple(s for s in items if s)


class StopText:
    """Cuts generated text at the first stop sequence."""

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def cut(self, decoded: str, final: bool = False) -> tuple[str, bool]:
        """The part of ``decoded`` (all the text generated so far) that may be output now,
        and whether a stop sequence ended the reply."""
        found = [i for i in (decoded.find(s) for s in self.stops) if i >= 0]
        if found:
            return decoded[: min(found)], True
        if final or not self.hold:
            return decoded, False
        return decoded[: max(0, len(decoded) - self.hold)], False
