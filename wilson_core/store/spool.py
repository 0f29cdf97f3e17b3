"""The spool: captures that could not reach the database wait here, then are replayed.

A spool is a JSONL file beside the database (``data.db.spool.jsonl``), or,
when that folder cannot be written (read-only, disk full), in a second
location: ``$WILSON_SPOOL_DIR``, else the user's state folder
(``$XDG_STATE_HOME/wilson/spool``, ``~/.local/state/wilson/spool``,
``%LOCALAPPDATA%\\wilson\\spool``), named after the database path.

Appends take an exclusive lock (:mod:`wilson_core.filelock`) and check that
the file they locked is still the one at the path (a replay may have just
renamed it); a failed append is cut back to where it started, so a full disk
never leaves a torn line.  Replay renames the file to ``*.replaying-PID`` and
holds its lock until done: a ``*.replaying-*`` file whose lock is free was
left by a replay that died, and is replayed again (inserts are idempotent).
Records that cannot be stored even then go to ``*.quarantine.jsonl`` beside
the spool, counted, so a bad record never blocks the ones after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core import converter, filelock
from wilson_core.records import Interaction, Run, ToolResult

_KINDS = {"interaction": Interaction, "tool_result": ToolResult, "run": Run}


def state_dir() -> Path:
    """The user's state folder for Wilson (where the second spool location lives)."""
    if sys.platform == "win32":  # pragma: no cover
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "wilson"
    if sys.platform == "darwin":  # pragma: no cover
        return Path.home() / "Library" / "Application Support" / "wilson"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "wilson"


def fallback_dir() -> Path:
    """``$WILSON_SPOOL_DIR``, else ``<state dir>/spool``."""
    env = os.environ.get("WILSON_SPOOL_DIR")
    return Path(env).expanduser() if env else state_dir() / "spool"


def _server_spool_name(url: str) -> str:
    """A PostgreSQL store's spool file name: the server, not a file, so only the spool folder."""
    from .postgres import redact

    return "postgresql-" + hashlib.sha256(redact(url).encode("utf-8", "surrogatepass")).hexdigest()[:16] + ".spool.jsonl"


def spool_paths(db_path: Path) -> list[Path]:
    """Where spooled captures for ``db_path`` may be, in order of preference."""
    if isinstance(db_path, str) and db_path.startswith(("postgresql://", "postgres://")):
        return [fallback_dir() / _server_spool_name(db_path)]
    db_path = Path(db_path).expanduser().absolute()
    digest = hashlib.sha256(str(db_path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return [
        db_path.with_name(db_path.name + ".spool.jsonl"),
        fallback_dir() / f"{db_path.name}-{digest}.spool.jsonl",
    ]


def _legacy_path(db_path: Path) -> Path:
    """The second location of earlier versions (``~/.wilson/spool``): still read, never written."""
    if isinstance(db_path, str) and db_path.startswith(("postgresql://", "postgres://")):
        return Path.home() / ".wilson" / "spool" / _server_spool_name(db_path)
    db_path = Path(db_path).expanduser().absolute()
    digest = hashlib.sha256(str(db_path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Path.home() / ".wilson" / "spool" / f"{db_path.name}-{digest}.spool.jsonl"


def quarantine_path(spool_path: Path) -> Path:
    """Where records of ``spool_path`` that cannot be stored are kept."""
    base = spool_path.name.split(".replaying-")[0]
    return spool_path.with_name(base.replace(".spool.jsonl", "") + ".quarantine.jsonl")


def encode(record: Interaction | ToolResult | Run) -> bytes:
    """One spool line for ``record``."""
    kind = next(name for name, cls in _KINDS.items() if isinstance(record, cls))
    line = json.dumps(
        {"kind": kind, "record": converter.unstructure(record)}, ensure_ascii=False, default=str
    )
    return (line + "\n").encode("utf-8", "surrogatepass")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def append_line(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` under its lock, durably, all or nothing.

    :raises OSError: the file cannot be written (nothing of ``data`` is left in it).
    """
    for _attempt in range(20):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            filelock.lock(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                continue  # renamed by a replay while we waited: open the new file
            mine = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                continue
            start = mine.st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # no torn line for the next append
                raise
            return
        finally:
            os.close(fd)
    raise OSError(f"{path} kept being replaced while appending")


def append(db_path: Path, record: Interaction | ToolResult | Run) -> Path:
    """Append ``record`` to the first writable spool for ``db_path``; return its path.

    :raises OSError: no spool location can be written (the caller keeps the record in memory).
    """
    data = encode(record)
    errors = []
    for path in spool_paths(db_path):
        try:
            append_line(path, data)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        return path
    raise OSError("no spool location is writable: " + "; ".join(errors))


def pending(db_path: Path) -> int:
    """How many spooled captures wait for ``db_path``."""
    total = 0
    for path in _existing(db_path):
        try:
            with open(path, "rb") as handle:
                total += sum(1 for line in handle if line.strip())
        except OSError:
            continue
    return total


def quarantined(db_path: Path) -> list[tuple[Path, int]]:
    """The quarantine files of ``db_path`` and how many records each holds."""
    found = []
    for spool_path in [*spool_paths(db_path), _legacy_path(db_path)]:
        path = quarantine_path(spool_path)
        try:
            with open(path, "rb") as handle:
                found.append((path, sum(1 for line in handle if line.strip())))
        except OSError:
            continue
    return found


def _existing(db_path: Path) -> Iterator[Path]:
    seen = set()
    for path in [*spool_paths(db_path), _legacy_path(db_path)]:
        if path in seen:
            continue
        seen.add(path)
        if path.exists():
            yield path
        with contextlib.suppress(OSError):
            yield from path.parent.glob(path.name + ".replaying-*")


def leftovers(db_path: Path) -> dict[str, list[Path]]:
    """Files a person should look at: ``unreadable`` spool lines kept aside, ``stale`` replays
    (a ``*.replaying-*`` file no live replay holds: the next open replays it)."""
    found: dict[str, list[Path]] = {"unreadable": [], "stale": []}
    for path in [*spool_paths(db_path), _legacy_path(db_path)]:
        with contextlib.suppress(OSError):
            found["unreadable"] += sorted(path.parent.glob(path.name + ".unreadable-*"))
        with contextlib.suppress(OSError):
            for replaying in sorted(path.parent.glob(path.name + ".replaying-*")):
                try:
                    fd = os.open(replaying, os.O_RDWR)
                except OSError:
                    continue
                try:
                    if filelock.lock(fd, blocking=False):
                        found["stale"].append(replaying)
                finally:
                    os.close(fd)
    return found


class Claim:
    """A spool file taken for replay: renamed and locked until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim(db_path: Path) -> list[Claim]:
    """Take the spool files of ``db_path`` for replay (each renamed and locked).

    A ``*.replaying-*`` file whose lock is free was left by a replay that
    died (or failed): it is taken again.  One whose lock is held is being
    replayed by another process right now and is left alone.
    """
    claimed = []
    for path in list(_existing(db_path)):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if ".replaying-" in path.name:
                if not filelock.lock(fd, blocking=False):
                    os.close(fd)
                    continue
                claimed.append(Claim(path, fd))
                continue
            filelock.lock(fd)
            now, mine = os.stat(path), os.fstat(fd)
            if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # taken by another replay while we waited
                continue
            target = path.with_name(f"{path.name}.replaying-{os.getpid()}")
            if target.exists():  # this process replayed and failed before: keep both
                target = path.with_name(f"{path.name}.replaying-{os.getpid()}-{os.urandom(3).hex()}")
            os.replace(path, target)
        except OSError:
            os.close(fd)
            continue
        claimed.append(Claim(target, fd))
    return claimed


def read(path: Path) -> Iterator[tuple[int, Interaction | ToolResult | Run | None, str | None]]:
    """Yield ``(line_number, record, error)`` for each line of a spool file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:  # lone surrogates spooled by earlier versions come back as they were, then cleaned
                line = raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", "replace")
            try:
                data: Any = json.loads(line)
                cls = _KINDS[data["kind"]]
                yield number, converter.structure(data["record"], cls), None
            except Exception as exc:  # a torn last line after a crash
                yield number, None, f"{path}:{number}: {exc}"


def quarantine(spool_path: Path, record: Interaction | ToolResult | Run, reason: str) -> Path:
    """Keep ``record``, which the database refused, in the quarantine file; return its path."""
    path = quarantine_path(spool_path)
    line = json.loads(encode(record).decode("utf-8", "surrogatepass"))
    line["reason"] = reason
    append_line(path, (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogatepass"))
    return path
