"""The spool: captures that could not reach the database wait here, then are replayed.

A spool is a JSONL file beside the database (``data.db.spool.jsonl``), or,
when that folder cannot be written, under ``$WILSON_SPOOL_DIR`` (default
``~/.wilson/spool``) named after the database path.  Appends take an
exclusive ``flock``; replay renames the file first so that concurrent writers
start a new one, and inserts are idempotent, so a replay interrupted half way
is simply replayed again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core import converter
from wilson_core.records import Interaction, Run, ToolResult

_KINDS = {"interaction": Interaction, "tool_result": ToolResult, "run": Run}


def spool_paths(db_path: Path) -> list[Path]:
    """Where spooled captures for ``db_path`` may be, in order of preference."""
    db_path = Path(db_path).expanduser().absolute()
    digest = hashlib.sha256(str(db_path).encode()).hexdigest()[:16]
    fallback_dir = Path(os.environ.get("WILSON_SPOOL_DIR", Path.home() / ".wilson" / "spool"))
    return [
        db_path.with_name(db_path.name + ".spool.jsonl"),
        fallback_dir / f"{db_path.name}-{digest}.spool.jsonl",
    ]


def append(db_path: Path, record: Interaction | ToolResult | Run) -> Path:
    """Append ``record`` to the first writable spool for ``db_path``; return its path."""
    kind = next(name for name, cls in _KINDS.items() if isinstance(record, cls))
    line = json.dumps(
        {"kind": kind, "record": converter.unstructure(record)}, ensure_ascii=False, default=str
    )
    errors = []
    for path in spool_paths(db_path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (line + "\n").encode("utf-8", "surrogatepass"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return path
    raise OSError("no spool location is writable: " + "; ".join(errors))


def pending(db_path: Path) -> int:
    """How many spooled captures wait for ``db_path``."""
    total = 0
    for path in _existing(db_path):
        with open(path, "rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def _existing(db_path: Path) -> Iterator[Path]:
    for path in spool_paths(db_path):
        if path.exists():
            yield path
        yield from path.parent.glob(path.name + ".replaying-*")


def _replayer_alive(path: Path) -> bool:
    """Whether another live process is replaying ``path`` right now."""
    try:
        pid = int(path.name.rsplit(".replaying-", 1)[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(db_path: Path) -> list[Path]:
    """Atomically take the spool files of ``db_path`` for replay."""
    claimed = []
    for path in list(_existing(db_path)):
        if ".replaying-" in path.name:
            if not _replayer_alive(path):
                claimed.append(path)  # left by an interrupted replay: replay again
            continue
        target = path.with_name(f"{path.name}.replaying-{os.getpid()}")
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(path, target)
        except OSError:
            continue
        finally:
            os.close(fd)
        claimed.append(target)
    return claimed


def read(path: Path) -> Iterator[tuple[int, Interaction | ToolResult | None, str | None]]:
    """Yield ``(line_number, record, error)`` for each line of a spool file."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data: Any = json.loads(line)
                cls = _KINDS[data["kind"]]
                yield number, converter.structure(data["record"], cls), None
            except Exception as exc:  # a torn last line after a crash
                yield number, None, f"{path}:{number}: {exc}"
