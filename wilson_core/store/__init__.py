"""The SQLite store and its capture sink."""

from __future__ import annotations

import os
from pathlib import Path

from .store import Store, default_db_path

__all__ = ["Store", "default_db_path", "open_store"]


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (and migrate) the Wilson database at ``path`` (default: :func:`default_db_path`).

    Captures spooled while the database could not be written are replayed.
    """
    from .sink import replay_spool

    store = Store(Path(path) if path is not None else default_db_path(), create=create)
    replay_spool(store)
    return store
