"""Atomic, streaming output files: written under a temporary name, renamed when complete.

An interrupted or failed export never leaves a half-written file under the
final name: the previous file (if any) stays as it was, and the temporary
file is removed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

from .options import ExportError


def eval_path(path: Path) -> Path:
    """The eval twin of ``path``: ``train.jsonl`` -> ``train.eval.jsonl``."""
    if path.suffix:
        return path.with_name(f"{path.stem}.eval{path.suffix}")
    return path.with_name(f"{path.name}.eval")


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


STDOUT = "-"


def check_writable(path: Path) -> Path:
    """Fail early, with a clear message, when ``path`` cannot become an output file.

    Returns the path to write: ``-`` (standard output) as it is, a symbolic
    link's target (the link is written through, never replaced).

    :raises ExportError: a folder, a FIFO, a device or socket (even behind a
        link, like ``/dev/stdout``: use ``-``), or a folder that cannot be written.
    """
    if str(path) == STDOUT:
        return path
    try:
        info = os.stat(path)  # through links: /dev/stdout is a link to a pipe or a terminal
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise ExportError(f"cannot write {path}: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ExportError(
                f"cannot write {path}: it is not a regular file (a FIFO, device or socket); "
                "give a file path, or - for standard output"
            )
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: cannot create folder {parent} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: folder {parent} is not writable")
    return path


def open_output(path: Path) -> AtomicFile:
    """The file an export writes: :class:`AtomicFile`, or :class:`StdoutFile` for ``-``."""
    return StdoutFile(path) if str(path) == STDOUT else AtomicFile(path)


def open_manifest(path: Path) -> AtomicFile:
    """The manifest beside ``path``; none (a sink that keeps nothing) when writing to standard output."""
    if str(path) == STDOUT:
        return StdoutFile(path, discard_all=True)
    return AtomicFile(manifest_path(path))


class AtomicFile:
    """A text file written line by line under a temporary name, with its SHA-256.

    ``commit()`` flushes, syncs and renames it to the final name;
    ``discard()`` removes the temporary file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self.bytes = 0
        self._hash = hashlib.sha256()
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.temp = Path(temp)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb", buffering=1 << 20)

    def write_line(self, text: str) -> None:
        data = text.encode("utf-8") + b"\n"
        self._hash.update(data)
        self.lines += 1
        self.bytes += len(data)
        assert self._file is not None
        self._file.write(data)

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._hash.update(data)
        self.bytes += len(data)
        assert self._file is not None
        self._file.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def commit(self) -> None:
        self.close()
        try:
            os.replace(self.temp, self.path)
        except OSError as exc:
            self.discard()
            raise ExportError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            self.temp.unlink()
        except FileNotFoundError:
            pass

    def describe(self) -> dict[str, Any]:
        return {"path": self.path.name, "lines": self.lines, "bytes": self.bytes, "sha256": self.sha256}


class StdoutFile(AtomicFile):
    """:class:`AtomicFile`'s interface over standard output (``--out -``): written as it goes."""

    def __init__(self, path: Path, *, discard_all: bool = False) -> None:
        import sys

        self.path = path
        self.lines = 0
        self.bytes = 0
        self._hash = hashlib.sha256()
        self.temp = path
        self._discard_all = discard_all
        self._file = None if discard_all else sys.stdout.buffer

    def write_line(self, text: str) -> None:
        if self._discard_all:
            return
        super().write_line(text)

    def write(self, text: str) -> None:
        if self._discard_all:
            return
        super().write(text)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except BrokenPipeError:  # a reader like `head` stopped reading: not an error
                pass
            self._file = None

    def commit(self) -> None:
        self.close()

    def discard(self) -> None:
        self.close()
