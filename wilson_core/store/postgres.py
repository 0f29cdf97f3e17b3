"""The PostgreSQL backend: the same store interface as SQLite, for a team sharing one store.

``open_store("postgresql://user@host:5432/db")`` (or ``WILSON_DB``) gives a
:class:`PostgresStore`: the write path, the read path, the labels, the export
and the dashboard's queries are the same modules as for SQLite, and their SQL
(written once, in SQLite's dialect) is translated here on its way to the
server (:func:`translate`): placeholders, ``INSERT OR IGNORE``, ``json_each``,
full-text search.  Every table has a ``rowid`` column (``bigserial``) so that
insertion order, and with it every export's order, is the same on both.

psycopg 3 is imported only when a PostgreSQL store opens (``wilson-core[postgres]``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wilson_core.errors import StoreError

from .reading import ReadPath
from .writing import WritePath, _Pending

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (for messages and spool file names)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# -- SQL translation ----------------------------------------------------------------

_FTS = "SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH ?"
_FTS_PG = (
    "SELECT rowid FROM interactions WHERE "
    "wilson_fts_doc(user_prompt, response_content, tool_calls_json) @@ wilson_tsquery(?)"
)
_INSERT_IGNORE = re.compile(r"INSERT OR IGNORE INTO", re.IGNORECASE)
_JSON_EACH = re.compile(r"json_each\(([^()]*)\)(?:\s+(?!WHERE\b)([A-Za-z_]\w*))?", re.IGNORECASE)
_PARAM = re.compile(r"'(?:[^']|'')*'|\?|(?<!:):([A-Za-z_]\w*)|%")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """SQLite-dialect SQL as PostgreSQL runs it (parameters as psycopg's ``%s`` / ``%(name)s``)."""
    text = sql.strip()
    if text.upper().startswith("BEGIN"):
        return "BEGIN"
    text = text.replace(_FTS, _FTS_PG)
    if _INSERT_IGNORE.search(text):
        text = _INSERT_IGNORE.sub("INSERT INTO", text)
        if "ON CONFLICT" not in text.upper():
            text += " ON CONFLICT DO NOTHING"
    text = _JSON_EACH.sub(
        lambda m: f"jsonb_array_elements_text(({m.group(1)})::jsonb) AS {m.group(2) or 'je'}(value)", text
    )

    def param(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token.replace("%", "%%")  # a string literal (parameters are always passed)

    return _PARAM.sub(param, text)


def _int_or_float(value: Any) -> Any:
    """``sum()`` and friends come back as ``numeric``: give Python what SQLite gives."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


class Row(tuple):
    """A row readable by position and by column name (like :class:`sqlite3.Row`)."""

    __slots__ = ()
    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key])  # type: ignore[attr-defined]
            except KeyError:
                raise IndexError(f"no column {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)

    def get(self, key: str, default: Any = None) -> Any:
        index = self._index.get(key)  # type: ignore[attr-defined]
        return default if index is None else tuple.__getitem__(self, index)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": {n: i for i, n in enumerate(names)}})


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return None
    cls = _row_class(tuple(d.name for d in description))
    return lambda values: cls(values)


class Cursor:
    """The few cursor methods the store's code uses, over a psycopg cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def close(self) -> None:
        self._cursor.close()


class Connection:
    """A psycopg connection in autocommit mode that runs the store's SQLite-dialect SQL."""

    def __init__(self, url: str, *, statement_timeout_ms: int | None = None) -> None:
        try:
            import psycopg
            from psycopg.adapt import Loader
        except ImportError:
            raise StoreError(
                "a PostgreSQL store needs psycopg 3: pip install 'wilson-core[postgres]'"
            ) from None

        class _NumericLoader(Loader):
            def load(self, data: Any) -> Any:
                from decimal import Decimal

                return _int_or_float(Decimal(bytes(data).decode()))

        try:
            extra = {"options": f"-c statement_timeout={statement_timeout_ms}"} if statement_timeout_ms else {}
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=_connect_timeout(), **extra)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the Wilson database {redact(url)}: {_first_line(exc)}") from None
        self._conn.adapters.register_loader("numeric", _NumericLoader)
        self._conn.row_factory = _row_factory
        self.pid = os.getpid()

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        cursor = self._conn.cursor()
        with self._lost():
            cursor.execute(translate(sql), params if params is not None else ())
        return Cursor(cursor)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        cursor = self._conn.cursor()
        if rows:
            with self._lost():
                cursor.executemany(translate(sql), rows)
        return Cursor(cursor)

    @contextlib.contextmanager
    def _lost(self) -> Iterator[None]:
        """A connection the server dropped (restart, network) becomes a :class:`StoreError`."""
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            if not self._conn.broken and not self._conn.closed:
                raise
            raise StoreError(f"the connection to the Wilson database was lost: {_first_line(exc)}") from None

    def stream(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), size: int = 2000) -> Iterator[Any]:
        """Rows of a big query through a server-side cursor (memory stays flat)."""
        with self._conn.transaction(), self._conn.cursor(name=f"wilson_{id(self)}_{threading.get_ident()}") as cur:
            cur.itersize = size
            cur.execute(translate(sql), params if params is not None else ())
            yield from cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed or self._conn.broken


def _connect_timeout() -> int:
    try:
        return max(1, int(os.environ.get("WILSON_PG_CONNECT_TIMEOUT", "5")))
    except ValueError:
        return 5


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _Transaction:
    """``BEGIN`` ... ``COMMIT`` / ``ROLLBACK``, optionally holding a transaction-level advisory lock."""

    def __init__(self, conn: Connection, lock: str | None = None) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> Connection:
        self.conn.execute("BEGIN")
        if self.lock is not None:
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (self.lock,))
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class PostgresStore(WritePath, ReadPath):
    """A Wilson store in a PostgreSQL database (the same interface as :class:`~.store.Store`).

    Each thread reads on its own connection; the capture writes of a process go
    through one connection in turns, with group commit, as on SQLite.
    """

    dialect = "postgresql"
    read_only = False

    def __init__(self, url: str, *, create: bool = True, background_checkpoint: bool = False) -> None:
        del background_checkpoint  # the server checkpoints
        if not is_postgres_url(url):
            raise StoreError(f"not a PostgreSQL URL: {url!r}")
        self.url = url
        #: where the store is, as the sink and the messages name it (the password left out).
        self.path = redact(url)
        self._local = threading.local()
        self._checkpointer = None
        self._write_lock = threading.Lock()
        self._busy_s = 30.0
        self._write_conn: Connection | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._known_blobs: set[str] = set()
        self._system_hashes: dict[str, str] = {}
        from .pg_schema import migrate

        migrate(self.connection(), create=create, where=self.path)

    def replaced(self) -> bool:
        return False

    def connection(self) -> Connection:
        """This thread's connection (created on first use, again after it broke)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.pid == os.getpid() and not conn.closed:
            return conn
        conn = Connection(self.url)
        self._local.conn = conn
        return conn

    def write_connection(self) -> Connection:
        conn = self._write_conn
        if conn is None or conn.pid != os.getpid() or conn.closed:
            # a server that hangs must not hold the app's call: capture gives up and spools
            from .connections import busy_timeout_ms

            conn = self._write_conn = Connection(self.url, statement_timeout_ms=busy_timeout_ms())
        return conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        if not self._write_lock.acquire(timeout=self._busy_s):
            raise StoreError(f"another thread of this process held the write turn for {self._busy_s:g} s")
        try:
            yield self.write_connection()
        finally:
            self._write_lock.release()

    def label_transaction(self) -> Any:
        """A label write transaction: label writers take turns (versions are numbered in it)."""
        return _Transaction(self.connection(), lock="wilson-labels")

    def integrity_check(self) -> str:
        self.connection().execute("SELECT 1").fetchone()
        return "ok"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._write_conn is not None and self._write_lock.acquire(timeout=self._busy_s):
            try:
                if self._write_conn.pid == os.getpid():
                    self._write_conn.close()
                self._write_conn = None
            finally:
                self._write_lock.release()

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"
