"""The SQLite store and its capture sink."""

from __future__ import annotations

import os

from .store import Store, default_db_path

__all__ = ["Store", "default_db_path", "open_store"]


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (and migrate) the Wilson database at ``path`` (default: :func:`default_db_path`).

    Captures spooled while the database could not be written are replayed.
    """
    import logging

    from .sink import replay_spool

    # (a URL is refused by the Store before ``Path`` can fold its ``//``)
    store = Store(path if path is not None else default_db_path(), create=create)
    if not store.read_only:
        try:
            replay_spool(store)
        except Exception as exc:  # reading must not fail because spooled captures cannot be written yet
            logging.getLogger("wilson.capture").warning(
                "spooled captures for %s could not be replayed yet (%s)", store.path, exc
            )
    return store
