"""A portable exclusive lock on an open file: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows.

Imported by the spool and the migration lock; importing it never fails on any OS.
"""

from __future__ import annotations

import os
import time

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]
try:
    import msvcrt as _msvcrt
except ImportError:
    _msvcrt = None  # type: ignore[assignment]


def lock(fd: int, *, blocking: bool = True) -> bool:
    """Take an exclusive lock on ``fd``; return ``False`` when ``blocking`` is off and it is held."""
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | (0 if blocking else _fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    if _msvcrt is None:  # neither: an OS without file locks; the spool's appends stay whole lines
        return True
    while True:  # pragma: no cover - Windows: lock the first byte, retry while held
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            if not blocking:
                return False
            time.sleep(0.01)


def unlock(fd: int) -> None:
    """Release the lock taken by :func:`lock` (closing ``fd`` releases it too)."""
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_UN)
        return
    if _msvcrt is None:
        return
    try:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
    except OSError:
        pass
