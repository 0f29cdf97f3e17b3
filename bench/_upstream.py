"""A minimal OpenAI chat-completions upstream for the bench scripts, and the helpers that
start, wait for and stop the server processes a bench runs.

:class:`ChatUpstream` is an asyncio protocol speaking raw HTTP/1.1 (keep-alive, no
framework, so the upstream costs as little as it can): a request whose body asks for
``"stream": true`` gets an SSE stream (chunked transfer encoding) of a role chunk,
``chunks`` text chunks ``tok0 tok1 ...`` 1 ms apart, a usage chunk and ``[DONE]``; any
other request gets :attr:`ChatUpstream.answer` (or the stream too, when that is ``None``).
A bench script subclasses it to set those, and runs it in its own process with
:func:`serve` (``python bench/bench_x.py --serve-upstream PORT``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time


def sse(data: dict | str) -> bytes:
    """One server-sent event as one chunk of a chunked HTTP body."""
    event = b"data: " + (data.encode() if isinstance(data, str) else json.dumps(data).encode()) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def chunk(delta: dict | None, usage: dict | None = None) -> bytes:
    """A ``chat.completion.chunk`` with ``delta`` for choice 0 (``None``: no choices, the usage chunk)."""
    data = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [] if delta is None else [{"index": 0, "delta": delta}]}
    if usage is not None:
        data["usage"] = usage
    return sse(data)


class ChatUpstream(asyncio.Protocol):
    """Answers chat completions: streamed ones chunk by chunk, others with :attr:`answer`."""

    #: the JSON body for a request that does not ask for a stream (``None``: stream every answer).
    answer: bytes | None = None
    #: text chunks in a stream (``tok0 `` ... ), 1 ms apart.
    chunks: int = 8
    #: the prompt tokens the usage chunk reports (completion tokens: :attr:`chunks`).
    prompt_tokens: int = 12

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            if self.answer is None or b'"stream": true' in body:
                self.stream()
            else:
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                     b"content-length: %d\r\n\r\n%s" % (len(self.answer), self.answer))

    def stream(self):
        loop = asyncio.get_running_loop()
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n" + chunk({"role": "assistant", "content": ""}))

        def later(k):
            if self.transport.is_closing():
                return
            if k < self.chunks:
                self.transport.write(chunk({"content": f"tok{k} "}))
                loop.call_later(0.001, later, k + 1)
            else:
                usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.chunks,
                         "total_tokens": self.prompt_tokens + self.chunks}
                self.transport.write(chunk(None, usage) + sse("[DONE]") + b"0\r\n\r\n")

        loop.call_later(0.001, later, 0)


async def serve(protocol: type[asyncio.Protocol], port: int) -> None:
    """Serve ``protocol`` on 127.0.0.1:``port`` until killed."""
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


# -- server processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {process.stderr.read()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    sys.exit("a helper module: run bench/run_all.py or a bench/bench_*.py script")
