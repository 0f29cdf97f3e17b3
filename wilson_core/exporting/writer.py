"""Atomic, streaming output files: written under a temporary name, renamed when complete.

An interrupted or failed export never leaves a half-written file under the
final name: the previous file (if any) stays as it was, and the temporary
file is removed.
"""

from __future__ import annotations

import hashlib
import os
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


def check_writable(path: Path) -> None:
    """Fail early, with a clear message, when ``path`` cannot become an output file."""
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a directory")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: cannot create folder {parent} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: folder {parent} is not writable")


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
