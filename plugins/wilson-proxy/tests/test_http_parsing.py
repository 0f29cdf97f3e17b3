"""The proxy's HTTP/1.1 parsing: bodies and heads cut anywhere, chunked framing, malformed input."""

from __future__ import annotations

import json
import socket
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wilson_proxy.http import ChunkedDecoder, HttpError, parse_request_head

from wilson_core.testing.upstreams import Scripted


def chunked(payload: bytes, sizes: list[int]) -> bytes:
    out, position = b"", 0
    for size in sizes:
        piece = payload[position : position + size]
        if not piece:
            break
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
        position += size
    if position < len(payload):
        out += b"%x\r\n%s\r\n" % (len(payload) - position, payload[position:])
    return out + b"0\r\nTrailer: x\r\n\r\n"


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]


@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20), st.lists(st.integers(0, 10_000), max_size=30),
       st.binary(max_size=20))
def test_chunked_decoder_gets_the_payload_whatever_the_cuts(payload, sizes, points, after):
    encoded = chunked(payload, sizes)
    decoder = ChunkedDecoder()
    pieces = []
    for part in cut(encoded + after, points):
        if decoder.done:
            break
        pieces += decoder.feed(part)
    assert decoder.done and b"".join(pieces) == payload
    assert encoded.endswith(b"\r\n\r\n")


@given(st.binary(max_size=200))
def test_malformed_heads_raise_http_errors_only(head):
    try:
        parse_request_head(head)
    except HttpError as exc:
        assert exc.status == 400


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.integers(0, 5000), max_size=8), use_chunked=st.booleans())
def test_requests_cut_anywhere_reach_the_upstream_whole(proxied, points, use_chunked):
    proxied.upstream.push(Scripted(text="fine"))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "é" * 50}]}).encode()
    if use_chunked:
        request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunked(body, [7, 13]))
    else:
        request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    port = int(proxied.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in cut(request, points):
            sock.sendall(part)
            time.sleep(0.001)
        data = b""
        while not data.endswith(b"}"):
            piece = sock.recv(65536)
            assert piece, data
            data += piece
    assert data.startswith(b"HTTP/1.1 200") and b'"fine"' in data
    assert proxied.upstream.requests[-1].body == body


def test_malformed_request_gets_400_and_the_proxy_keeps_serving(proxied):
    port = int(proxied.url.rsplit(":", 1)[1])
    for bad in (b"GARBAGE\r\n\r\n", b"POST /v1/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                b"POST /v1/x HTTP/1.1\r\n bad folding\r\n\r\n", b"POST http://evil/ HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(bad)
            answer = b""
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        assert answer.startswith(b"HTTP/1.1 400"), (bad, answer)
    proxied.upstream.push(Scripted(text="still here"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        while b"still here" not in data:
            data += sock.recv(65536)
