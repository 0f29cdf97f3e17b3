"""The little HTTP/1.1 the proxy needs: request heads, response heads, chunked bodies.

Parsing works on ``bytes`` with ``find``/``split``: no per-byte Python loop, no
third-party parser.  Header names are kept as they came (so a request goes
upstream with the client's spelling) next to their lower-cased form for
look-ups.
"""

from __future__ import annotations

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024

#: headers that describe one connection, not the message: never forwarded as they came.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


class HttpError(Exception):
    """A request the proxy answers itself with ``status`` and closes the connection after."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Header = tuple[bytes, bytes, bytes]  # (lower-cased name, value, the raw line)


def parse_headers(lines: list[bytes]) -> list[Header]:
    headers: list[Header] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise HttpError(400, f"malformed header line {line[:80]!r}")
        headers.append((name.lower(), value.strip(), line))
    return headers


def parse_request_head(head: bytes) -> tuple[bytes, bytes, bytes, list[Header]]:
    """``METHOD TARGET VERSION`` and the headers of a request head (without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not target.startswith(b"/"):
        raise HttpError(400, "the proxy takes origin-form targets only (a path starting with /)")
    return method, target, version, parse_headers(lines[1:])


def parse_status_line(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError(502, f"upstream sent a malformed status line {line[:80]!r}")
    return int(parts[1])


def header(headers: list[Header], name: bytes) -> bytes | None:
    for lower, value, _ in headers:
        if lower == name:
            return value
    return None


def content_length(headers: list[Header], *, upstream: bool = False) -> int | None:
    values = {value for lower, value, _ in headers if lower == b"content-length"}
    if not values:
        return None
    status = 502 if upstream else 400
    if len(values) > 1:
        raise HttpError(status, "conflicting Content-Length headers")
    value = values.pop()
    if not value.isdigit():
        raise HttpError(status, f"bad Content-Length {value[:40]!r}")
    return int(value)


def is_chunked(headers: list[Header]) -> bool:
    value = header(headers, b"transfer-encoding")
    return value is not None and value.lower().rstrip().endswith(b"chunked")


class ChunkedDecoder:
    """Incremental decoder of a chunked body: ``feed`` returns the payload pieces.

    ``done`` turns true after the last chunk and its trailers; bytes after the
    end are kept in ``rest``.
    """

    __slots__ = ("_buffer", "_remaining", "_state", "done", "rest")

    _SIZE, _DATA, _CRLF, _TRAILER = range(4)

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0
        self._state = self._SIZE
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        pieces: list[bytes] = []
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        position, size = 0, len(buffer)
        while position < size:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, size - position)
                pieces.append(buffer[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._CRLF
            elif state == self._SIZE:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if size - position > 1024:
                        raise HttpError(502, "chunk size line too long")
                    break
                text = buffer[position:end].split(b";", 1)[0].strip()
                try:
                    self._remaining = int(text, 16)
                except ValueError:
                    raise HttpError(502, f"bad chunk size {text[:20]!r}") from None
                position = end + 2
                self._state = self._DATA if self._remaining else self._TRAILER
            elif state == self._CRLF:
                if size - position < 2:
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise HttpError(502, "chunk not followed by CRLF")
                position += 2
                self._state = self._SIZE
            else:  # trailers, up to an empty line
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    break
                line_empty = end == position
                position = end + 2
                if line_empty:
                    self.done = True
                    self.rest = buffer[position:]
                    return pieces
        self._buffer = buffer[position:]
        return pieces


def response_head(status: int, headers: list[tuple[str, str]], body_length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body_length is not None:
        lines.append(f"content-length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
