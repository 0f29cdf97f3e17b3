"""The store (SQLite, or PostgreSQL for a team) and its capture sink."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store, default_db_path

__all__ = ["Store", "default_db_path", "open_store"]


def __getattr__(name: str) -> Any:
    """``Store`` and ``default_db_path``, imported when first used: the schema's modules
    (``wilson_core.store.labels``, ...) are imported by the annotation API, which every
    ``wilson`` command loads as a plugin, and must not bring sqlite3 and cattrs with them."""
    if name in ("Store", "default_db_path"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_postgres_url(location: object) -> bool:
    """``postgresql://...`` / ``postgres://...``: a PostgreSQL store (``wilson-core[postgres]``)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(
    path: str | os.PathLike[str] | None = None, *, create: bool = True, accept_empty: bool = True
) -> Any:
    """Open (and migrate) the Wilson database at ``path`` (default: ``$WILSON_DB``, else
    :func:`default_db_path`): a file path, or a ``postgresql://user@host:port/db`` URL.

    A file that is not a Wilson database is refused (never changed).  With ``create``, a
    database is made where nothing is, and, with ``accept_empty`` (a program naming the
    file), in an empty file; commands pass ``accept_empty=False``.

    Captures spooled while the database could not be written are replayed.
    """
    import logging

    from .sink import replay_spool
    from .store import Store, default_db_path

    location = path if path is not None else os.environ.get("WILSON_DB") or None
    if location is not None and is_postgres_url(os.fspath(location)):
        from .postgres import PostgresStore

        store: Any = PostgresStore(os.fspath(location), create=create)  # (a server has no empty file)
    else:
        # (any other URL is refused by the Store before ``Path`` can fold its ``//``)
        store = Store(path if path is not None else default_db_path(), create=create, accept_empty=accept_empty)
    if not store.read_only:
        try:
            replay_spool(store)
        except Exception as exc:  # reading must not fail because spooled captures cannot be written yet
            logging.getLogger("wilson.capture").warning(
                "spooled captures for %s could not be replayed yet (%s)", store.path, exc
            )
    return store
