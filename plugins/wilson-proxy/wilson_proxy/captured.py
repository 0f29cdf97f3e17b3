"""What the proxy records of one call: raw parts, turned into an interaction off the request path.

The request path only appends bytes and times to a :class:`Captured`; the
recorder (:mod:`.recorder`) parses and stores it on its own thread/process.
:func:`error_body` is the error JSON each protocol's SDK reads.
"""

from __future__ import annotations

import json
import time
from typing import Any

from wilson_core.records import new_id, utcnow


class Captured:
    """One recorded call as raw parts; the recorder turns it into an interaction."""

    __slots__ = (
        "id", "protocol", "endpoint", "run_id", "run_given", "sequence", "call_type", "metadata",
        "request_body", "status", "content_type", "parts", "times", "started", "ended",
        "outcome", "error", "created_at", "upstream", "answered_by",
    )

    def __init__(self, protocol: str, endpoint: str, request_body: bytes, upstream: str) -> None:
        self.id = new_id()
        self.protocol = protocol
        self.endpoint = endpoint
        self.request_body = request_body
        self.upstream = upstream
        self.run_id: str | None = None
        self.run_given = False
        self.sequence = 1
        self.call_type: str | None = None
        self.metadata: bytes | None = None
        self.status = 0
        self.content_type = b""
        #: the response body (without chunked framing) as it arrived, and when each piece did
        self.parts: list[bytes] = []
        self.times: list[float] = []
        self.started = time.perf_counter()
        self.ended = 0.0
        self.outcome = "ok"
        self.error: str | None = None
        self.created_at = utcnow()
        #: ``NAME:MODEL`` of the local model that answered (routes, ``wilson serve``); ``None``: the upstream
        self.answered_by: str | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> Captured:
        captured = cls.__new__(cls)
        for name, value in zip(cls.__slots__, values, strict=True):
            setattr(captured, name, value)
        return captured


#: ``error.type`` of a request refused for what it asks (both OpenAI and Anthropic name it so)
INVALID_REQUEST = "invalid_request_error"


def error_body(protocol: str, message: str, kind: str, param: str | None = None) -> bytes:
    """An error in the shape the client's SDK reads for its protocol (``param``: OpenAI's field)."""
    if protocol == "anthropic":
        data: Any = {"type": "error", "error": {"type": kind, "message": message}}
    elif protocol == "ollama":
        data = {"error": message}
    else:
        code = "invalid_value" if kind == INVALID_REQUEST and param else None if kind == INVALID_REQUEST else kind
        data = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json.dumps(data).encode()
