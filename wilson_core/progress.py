"""A progress line for long steps that report nothing themselves (an ONNX export, a quantisation).

    with heartbeat("exporting the decoder to ONNX"):
        torch.onnx.export(...)

prints ``      exporting the decoder to ONNX... 10 s`` every ``every`` seconds to
stderr while the block runs, and ``... done in N s`` after it when it took longer
than one period.  One line each, no carriage returns, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def heartbeat(label: str, *, every: float = 10.0, say: Callable[[str], None] = _say,
              indent: str = "      ") -> Iterator[None]:
    """Say that ``label`` is still running every ``every`` seconds while the block runs."""
    started = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            say(f"{indent}{label}... {time.monotonic() - started:.0f} s")

    thread = threading.Thread(target=beat, name="wilson-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        spent = time.monotonic() - started
        if spent >= every:
            say(f"{indent}{label}: done in {spent:.0f} s")
