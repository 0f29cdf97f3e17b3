"""Recording off the request path: a pipe the event loop only writes to, one writer process.

The writer process reads what the pipe holds in batches, turns each
:class:`~wilson_proxy.captured.Captured` into an interaction with the wire
protocol converters of :mod:`wilson_core.protocols` (request -> messages,
tools and parameters; response or stream -> content, tool calls, usage) and
records it through :mod:`wilson_core.capture`, so every sink receives it,
runs get their sequence numbers and tool results in the next request are
linked to the calls that asked for them.  :meth:`Recorder.close` drains the
queue before it returns.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .captured import Captured

log = logging.getLogger("wilson.proxy")

#: (protocol, endpoint) -> the converter module in ``wilson_core.protocols``
CONVERTERS = {
    ("openai", "chat"): "openai_chat",
    ("openai", "responses"): "openai_responses",
    ("anthropic", "messages"): "anthropic",
    ("ollama", "chat"): "ollama",
}


def converter(protocol: str, endpoint: str) -> Any:
    return importlib.import_module(f"wilson_core.protocols.{CONVERTERS[(protocol, endpoint)]}")


def parts_of(captured: Captured) -> dict[str, Any]:
    """The parts of :func:`wilson_core.capture.record_call` for one captured call."""
    from wilson_core.protocols.common import ProtocolError

    module = converter(captured.protocol, captured.endpoint)
    parts: dict[str, Any] = {"provider": captured.protocol, "messages": (), "model": "unknown"}
    errors: list[str] = []
    try:
        request = module.parse_request(captured.request_body)
    except ProtocolError as exc:
        errors.append(f"request: {exc}")
        request = None
    if request is not None:
        parts.update(messages=request.messages, tools=request.tools, params=request.params)
        if request.model:
            parts["model"] = request.model
    duration_ms = (captured.ended - captured.started) * 1000.0
    parts["duration_ms"] = duration_ms
    body = b"".join(captured.parts)
    status = captured.status
    content_type = captured.content_type.split(b";", 1)[0].strip().lower()
    streamed = content_type in (b"text/event-stream", b"application/x-ndjson")
    interrupted = captured.error if captured.outcome == "incomplete" else None
    result = None
    if status == 0 or status >= 400 or captured.outcome == "error":
        text = module.error_text(status, body) if status >= 400 and body else None
        errors.append(text or captured.error or f"HTTP {status}")
        parts["status"] = "error"
    elif streamed:
        assembler = module.Assembler(request)
        ttft = None
        for arrived, piece in zip(captured.times, captured.parts, strict=True):
            if assembler.feed_bytes(piece) and ttft is None:
                ttft = (arrived - captured.started) * 1000.0
        assembler.end()
        result = assembler.result(interrupted=interrupted)
        parts["ttft_ms"] = ttft
    elif captured.outcome == "incomplete":
        parts["status"] = "incomplete"
        errors.append(interrupted or "the answer was cut short")
    else:
        try:
            result = module.parse_response(body, request)
        except ProtocolError as exc:
            parts["status"] = "error"
            errors.append(f"response: {exc}")
    if result is not None:
        parts.update(result.answer_parts())
        if result.error:
            errors.append(result.error)
        if result.model and parts["model"] == "unknown":
            parts["model"] = result.model
    if captured.answered_by:  # a local model answered (a route, `wilson serve`): say which
        name, _, model = captured.answered_by.partition(":")
        parts["provider"], parts["model"] = name, model or parts["model"]
    if errors:
        parts["error"] = "; ".join(errors)
    return parts


def metadata_of(value: bytes | None) -> dict[str, Any]:
    """``X-Wilson-Metadata``: a JSON object; anything else is kept as text under ``header``."""
    if not value:
        return {}
    text = value.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return {"header": text}
    return data if isinstance(data, dict) else {"header": text}


def record_one(captured: Captured, db: str | None) -> None:
    """Turn one captured call into an interaction and record it through :mod:`wilson_core.capture`."""
    from wilson_core import capture

    parts = parts_of(captured)
    metadata = metadata_of(captured.metadata)
    call_type = captured.call_type or "agent"
    if captured.run_given and captured.run_id:
        run = capture.run_for_id(captured.run_id, call_type=call_type, metadata=metadata, db=db)
    else:
        run = capture.CaptureRun(call_type=call_type, metadata=metadata, db=db, id=captured.run_id, standalone=True)
        if metadata:
            run.start()
    call = capture.CallCapture(run, call_type=call_type, db=db, created_at=captured.created_at)
    interaction = call.interaction(**parts)
    call.record(attrs.evolve(interaction, id=captured.id, sequence_num=captured.sequence))


# -- the writer process ------------------------------------------------------------------

_LENGTH = struct.Struct("!I")


class _StatusReader(asyncio.Protocol):
    """Reads one writer's ``recorded failed`` lines (counts since that writer started)."""

    def __init__(self, owner: Recorder, process: subprocess.Popen[bytes]) -> None:
        self.owner = owner
        self.process = process
        self.buffer = b""
        self.recorded = self.failed = 0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if lines:
            recorded, failed = lines[-1].split()
            self.recorded, self.failed = int(recorded), int(failed)
            self.owner.counts_changed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.writer_gone(self)


class Recorder:
    """The parent side: ``submit`` (on the event loop) frames a captured call onto the writer's pipe.

    The writer is a child process (``python -m wilson_proxy.recorder``), so that
    parsing and database writes never hold the proxy's GIL: the proxy's event
    loop only pickles raw bytes and writes them to a pipe without blocking.  A
    writer that dies is replaced at once; what it had received and not
    recorded is counted as ``lost`` (``GET /wilson/health``), and calls made
    while the new one starts are held and handed to it.
    """

    def __init__(self, db: str | os.PathLike[str] | None = None) -> None:
        self.db = os.fspath(db) if db is not None else None
        self.submitted = 0
        self.recorded = 0
        self.failed = 0
        self.lost = 0
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.pipe: asyncio.WriteTransport | None = None
        self.writer_done = asyncio.Event()
        self.closing = False
        self._reader: _StatusReader | None = None
        self._sent = 0  # frames handed to the current writer
        self._done_before = (0, 0)  # recorded, failed by earlier writers
        self._held: list[bytes] = []

    async def start(self) -> None:
        command = [sys.executable, "-m", "wilson_proxy.recorder"] + (["--db", self.db] if self.db else [])
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        loop = asyncio.get_running_loop()
        assert process.stdin is not None and process.stdout is not None
        pipe, _ = await loop.connect_write_pipe(asyncio.Protocol, process.stdin)
        reader = _StatusReader(self, process)
        await loop.connect_read_pipe(lambda: reader, process.stdout)
        self.process, self.pipe, self._reader, self._sent = process, pipe, reader, 0
        held, self._held = self._held, []
        for frame in held:
            self._write(frame)

    def counts_changed(self) -> None:
        reader = self._reader
        if reader is not None:
            self.recorded = self._done_before[0] + reader.recorded
            self.failed = self._done_before[1] + reader.failed

    def writer_gone(self, reader: _StatusReader) -> None:
        if reader is not self._reader:
            return
        if self.closing:
            self.writer_done.set()
            return
        self.lost += self._sent - reader.recorded - reader.failed
        self._done_before = (self.recorded, self.failed)
        self._reader = None
        self.pipe = None
        self.restarts += 1
        log.error("the capture writer exited (%s); starting a new one", reader.process.poll())
        asyncio.get_running_loop().create_task(self.start())

    def _write(self, frame: bytes) -> None:
        pipe = self.pipe
        if pipe is None or pipe.is_closing():
            self._held.append(frame)  # a new writer is starting
            return
        self._sent += 1
        pipe.write(frame)

    def submit(self, captured: Captured) -> None:
        self.submitted += 1
        data = pickle.dumps(captured.to_tuple(), protocol=pickle.HIGHEST_PROTOCOL)
        self._write(_LENGTH.pack(len(data)) + data)

    def stats(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.poll() is None
        return {
            "captured": self.submitted,
            "recorded": self.recorded,
            "capture_errors": self.failed,
            "lost": self.lost,
            "pending": self.submitted - self.recorded - self.failed - self.lost,
            "writer_alive": alive,
            "writer_restarts": self.restarts,
        }

    async def close(self, timeout: float = 120.0) -> bool:
        """Hand over everything queued, let the writer record it and exit; ``False`` on timeout."""
        self.closing = True
        if self.process is None:
            return True
        if self.pipe is not None:
            self.pipe.close()  # flushes what is buffered, then the writer sees the end
        else:  # the writer died and its successor is not up: what waits for it is lost
            self.lost += len(self._held)
            self._held = []
            self.writer_done.set()
        try:
            await asyncio.wait_for(self.writer_done.wait(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            return False
        finally:
            self.process.wait()
        return True


def writer_main(argv: list[str] | None = None) -> int:
    """The writer process: frames from stdin, recorded one by one, counts reported on stdout."""
    import argparse

    from .captured import Captured

    parser = argparse.ArgumentParser(prog="python -m wilson_proxy.recorder")
    parser.add_argument("--db")
    args = parser.parse_args(argv)
    from wilson_core import plugins

    try:
        os.nice(5)  # background work: the proxy's event loop goes first when cores are scarce
    except (AttributeError, OSError):
        pass
    plugins.plugin_manager()
    source = sys.stdin.buffer.fileno()
    out = sys.stdout.buffer
    buffer = bytearray()
    recorded = failed = 0
    while True:
        chunk = os.read(source, 1 << 20)
        if not chunk:
            break
        buffer += chunk
        position = 0
        while len(buffer) - position >= 4:
            (length,) = _LENGTH.unpack_from(buffer, position)
            if len(buffer) - position - 4 < length:
                break
            data = bytes(buffer[position + 4 : position + 4 + length])
            position += 4 + length
            try:
                record_one(Captured.from_tuple(pickle.loads(data)), args.db)
                recorded += 1
            except Exception as exc:  # one bad capture must not stop the others
                failed += 1
                log.warning("could not record a call: %s: %s", type(exc).__name__, exc)
        del buffer[:position]
        out.write(b"%d %d\n" % (recorded, failed))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(writer_main())
