"""The SQLite store: durable, concurrent writes on the capture path and the read API.

A capture is one ``INSERT`` (a trigger creates the run row) on the process's
write connection (WAL, ``synchronous=NORMAL``, busy timeout); threads take
turns and whoever holds the turn commits every queued capture at once, so
several threads and processes can capture at the same time.  Large repeated
parts (system prompts, tool schemas) are stored once in ``blobs``, addressed
by their SHA-256.  Reads use a connection per thread.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wilson_core import converter
from wilson_core.errors import NotFound, StoreError
from wilson_core.records import Interaction, Run, ToolCall, ToolResult

#: default busy timeout; ``$WILSON_BUSY_TIMEOUT_MS`` overrides it (read when a connection opens).
BUSY_TIMEOUT_MS = 5_000


def busy_timeout_ms() -> int:
    """How long a write waits for a lock held by another connection before giving up."""
    value = os.environ.get("WILSON_BUSY_TIMEOUT_MS", "")
    try:
        return max(0, int(value)) if value.strip() else BUSY_TIMEOUT_MS
    except ValueError:
        raise StoreError(f"WILSON_BUSY_TIMEOUT_MS must be a number of milliseconds, got {value!r}") from None


def _describe_error(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "encrypted" in text
    ):
        return (
            f"{path} is not a usable Wilson database ({text}); "
            "it was left untouched: move it aside to start a new one"
        )
    return f"cannot use the Wilson database {path}: {text}"

_INSERT_INTERACTION = """
INSERT OR IGNORE INTO interactions (
    id, run_id, sequence_num, call_type, model, provider, system_hash, user_prompt,
    messages_json, response_content, tool_calls_json, tools_hash, params_json,
    input_tokens, output_tokens, total_tokens, duration_ms, status, error, created_at,
    context_hash
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (id, call_type, started_at, metadata_json) VALUES (?, ?, ?, ?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, kind, content) VALUES (?, ?, ?)"
_INSERT_TOOL_RESULT = """
INSERT OR IGNORE INTO tool_results (
    id, interaction_id, tool_call_id, tool_name, arguments_json, content, is_error,
    duration_ms, created_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

INTERACTION_COLUMNS = (
    "i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, s.content AS system_prompt, "
    "i.messages_json, i.response_content, i.tool_calls_json, t.content AS tools_json, "
    "i.params_json, i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms, "
    "i.status, i.error, i.created_at"
)
INTERACTION_FROM = (
    "interactions i LEFT JOIN blobs s ON s.hash = i.system_hash "
    "LEFT JOIN blobs t ON t.hash = i.tools_hash"
)


def default_db_path() -> Path:
    """``$WILSON_DB``, else ``~/.wilson/data.db``."""
    env = os.environ.get("WILSON_DB")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".wilson" / "data.db"


# default=str: an app's odd parameter (an enum, a model class) must not lose the record.
# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the hashes of contexts and tools depend on it."""
    return _ENCODER.encode(value)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def context_hash_of(messages: Sequence[dict[str, Any]]) -> str:
    """The hash that says two calls saw the same conversation (system prompt and messages)."""
    system_hash, rest = _split_system(messages)
    return sha256((system_hash or "") + "|" + _dumps(rest))


def _is_plain_system(message: dict[str, Any] | None) -> bool:
    """A leading ``{"role": "system", "content": str}`` is stored once, as a blob."""
    return (
        message is not None
        and len(message) == 2
        and message.get("role") == "system"
        and isinstance(message.get("content"), str)
    )


def _split_system(messages: Sequence[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    if messages and _is_plain_system(messages[0]):
        return sha256(messages[0]["content"]), list(messages[1:])
    return None, list(messages)


def _tool_call_dict(call: ToolCall) -> dict[str, Any]:
    data = {"id": call.id, "name": call.name, "args": call.arguments}
    if call.raw_arguments is not None:
        data["raw_args"] = call.raw_arguments
    return data


def _tool_call_from_row(data: dict[str, Any]) -> ToolCall:
    return converter.structure(
        {
            "id": data["id"],
            "name": data["name"],
            "arguments": data.get("args") or {},
            "raw_arguments": data.get("raw_args"),
        },
        ToolCall,
    )


@functools.lru_cache(maxsize=1)
def migration_names() -> tuple[str, ...]:
    """The names of the schema's migrations, read from ``schema.py`` without running it.

    Importing ``sqlite_utils`` also imports pandas and numpy when they are
    installed (a third of a second), so an up-to-date database is recognised
    without it.
    """
    import ast

    try:
        source = Path(__file__).with_name("schema.py").read_text(encoding="utf-8")
    except OSError:
        return ()
    names = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Name)
                and decorator.func.id == "migrations"
            ):
                custom = [
                    k.value.value
                    for k in decorator.keywords
                    if k.arg == "name" and isinstance(k.value, ast.Constant)
                ]
                names.append(custom[0] if custom else node.name)
    return tuple(names)


def _up_to_date(conn: sqlite3.Connection) -> bool:
    names = migration_names()
    if not names:
        return False
    try:
        applied = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson'"
            )
        }
    except sqlite3.OperationalError:  # no migrations table yet
        return False
    return set(names) <= applied


class Store:
    """A Wilson database on disk.

    Open with :func:`wilson_core.open_store`.  Safe to share between threads:
    each thread reads on its own connection (:meth:`connection`), and the
    capture writes go through one per-process connection in turns
    (:meth:`writing`, with group commit).  A forked child opens new ones.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        background_checkpoint: bool = False,
    ) -> None:
        """Open (creating and migrating when needed) the database at ``path``.

        :param background_checkpoint: move WAL checkpoints off the writing
            threads onto a background thread (the capture sink uses this, so
            an app's call never pays for a checkpoint).
        """
        self.path = Path(path).expanduser()
        self._local = threading.local()
        self._checkpointer = _Checkpointer(self) if background_checkpoint else None
        # Threads of one process take turns here rather than in SQLite's busy
        # handler, which sleeps at least a millisecond before retrying.
        self._write_lock = threading.Lock()
        self._busy_s = busy_timeout_ms() / 1000
        self._write_conn: sqlite3.Connection | None = None
        self._write_pid = 0
        self._pending: collections.deque[_Pending] = collections.deque()
        self._known_blobs: set[str] = set()
        self._system_hashes: dict[str, str] = {}
        if not self.path.exists():
            if not create:
                raise StoreError(f"no Wilson database at {self.path}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self.path}: {exc}") from None
        conn = self.connection()
        try:
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(_describe_error(self.path, exc)) from None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if _up_to_date(conn):
            return  # the common case: no need to import sqlite_utils (and pandas with it)
        from sqlite_utils import Database

        from . import schema  # sqlite_utils is slow to import: only when a store opens

        db = Database(conn)
        if not schema.migrations.pending(db):
            return
        # Two processes opening a new database at once must not both migrate it.
        lock_path = f"{self.path}.migrate.lock"
        lock_fd = None
        try:
            lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except OSError:
            lock_fd = None  # a read-only folder: migrate without the lock
        try:
            if schema.migrations.pending(db):
                schema.apply(db)
        finally:
            if lock_fd is not None:
                # Removed while still held: a process waiting on this file finds
                # nothing pending, and one arriving later makes a new file.
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
                os.close(lock_fd)

    # -- connections -----------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (created on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = self._open()
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def write_connection(self) -> sqlite3.Connection:
        """The connection the capture path writes with: one per process, shared by its threads.

        One connection keeps its page cache warm; a connection per thread would
        find its cache invalidated by every other thread's commit.  Use it only
        inside :meth:`writing`.
        """
        conn = self._write_conn
        if conn is None or self._write_pid != os.getpid():
            conn = self._open()
            self._write_conn, self._write_pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        timeout_ms = busy_timeout_ms()
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(_describe_error(self.path, exc)) from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(_describe_error(self.path, exc)) from None
        return conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """This process's turn to write, on :meth:`write_connection`.

        Waits no longer than the busy timeout for the other threads, then
        raises ``sqlite3.OperationalError`` like a lock held by another process.
        """
        if not self._write_lock.acquire(timeout=self._busy_s):
            raise sqlite3.OperationalError(
                f"database is locked (another thread of this process held it for {self._busy_s:g} s)"
            )
        try:
            yield self.write_connection()
        finally:
            self._write_lock.release()

    def close(self) -> None:
        """Close this thread's connection and stop the background checkpointer."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._write_conn is not None and self._write_lock.acquire(timeout=self._busy_s):
            try:
                if self._write_pid == os.getpid():
                    self._write_conn.close()
                self._write_conn = None
            finally:
                self._write_lock.release()

    def db(self) -> Any:
        """A :class:`sqlite_utils.Database` over this thread's connection (for reads and tools)."""
        from sqlite_utils import Database

        return Database(self.connection())

    # -- writing (the capture path) --------------------------------------

    def _blob(self, conn: sqlite3.Connection, kind: str, content: str, digest: str) -> None:
        if digest not in self._known_blobs:
            conn.execute(_INSERT_BLOB, (digest, kind, content))

    def interaction_row(self, interaction: Interaction) -> tuple[tuple[Any, ...], list[tuple]]:
        """The ``interactions`` row for ``interaction`` and the blobs it needs."""
        blobs: list[tuple[str, str, str]] = []
        messages = interaction.messages
        system_hash = None
        rest: Sequence[dict[str, Any]] = messages
        first = messages[0] if messages else None
        if _is_plain_system(first):
            content = first["content"]
            system_hash = self._system_hashes.get(content)
            if system_hash is None:
                system_hash = sha256(content)
                if len(self._system_hashes) < 1024:
                    self._system_hashes[content] = system_hash
            blobs.append(("system_prompt", content, system_hash))
            rest = messages[1:]
        messages_json = _dumps(rest)  # a tuple encodes as a JSON array: no copy
        tools_hash = None
        if interaction.tools:
            tools_json = _dumps(interaction.tools)
            tools_hash = sha256(tools_json)
            blobs.append(("tools", tools_json, tools_hash))
        tool_calls_json = (
            _dumps([_tool_call_dict(c) for c in interaction.tool_calls])
            if interaction.tool_calls
            else None
        )
        row = (
            interaction.id,
            interaction.run_id,
            interaction.sequence_num,
            interaction.call_type,
            interaction.model,
            interaction.provider,
            system_hash,
            interaction.user_prompt,
            messages_json,
            interaction.response_content,
            tool_calls_json,
            tools_hash,
            _dumps(interaction.params) if interaction.params else None,
            interaction.input_tokens,
            interaction.output_tokens,
            interaction.total_tokens,
            interaction.duration_ms,
            interaction.status,
            interaction.error,
            interaction.created_at,
            sha256((system_hash or "") + "|" + messages_json),
        )
        return row, blobs

    def write_interaction(self, interaction: Interaction, run: Run | None = None) -> None:
        """Durably insert one interaction (idempotent: the same id twice is one row)."""
        self.write_interactions([interaction], runs={interaction.run_id: run} if run else None)

    def write_interactions(
        self, interactions: Sequence[Interaction], runs: dict[str, Run | None] | None = None
    ) -> None:
        """Insert several interactions in one transaction (all or none)."""
        if len(interactions) == 1 and not runs:  # the capture path: one call, blobs already stored
            row, blobs = self.interaction_row(interactions[0])
            known = self._known_blobs
            for _, _, digest in blobs:
                if digest not in known:
                    break
            else:
                self._group_insert(row)
                return
            prepared = [(interactions[0], row, blobs)]
        else:
            prepared = [(i, *self.interaction_row(i)) for i in interactions]
        with self.writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for interaction, row, blobs in prepared:
                    for kind, content, digest in blobs:
                        self._blob(conn, kind, content, digest)
                    run = (runs or {}).get(interaction.run_id)
                    conn.execute(
                        _INSERT_RUN,
                        (
                            interaction.run_id,
                            run.call_type if run else interaction.call_type,
                            run.started_at if run else interaction.created_at,
                            _dumps(run.metadata) if run and run.metadata else None,
                        ),
                    )
                    conn.execute(_INSERT_INTERACTION, row)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if len(self._known_blobs) > 50_000:  # an app whose prompts never repeat: stay small
            self._known_blobs.clear()
        for _, _, blobs in prepared:
            self._known_blobs.update(digest for _, _, digest in blobs)
        if self._checkpointer is not None:
            self._checkpointer.note_write(len(prepared))

    def _group_insert(self, row: tuple[Any, ...]) -> None:
        """The hot path: insert one interaction row, committing together with other threads'.

        The row joins a queue; whichever thread holds the write turn commits
        every queued row in one transaction (group commit), so under
        contention the others find theirs already written and return without
        touching SQLite.  Alone, it is one ``INSERT`` statement (the run row is
        created by the ``interactions_create_run`` trigger).  A failed batch
        fails every call in it, so each caller can spool its own record.
        """
        entry = _Pending(row)
        pending = self._pending
        pending.append(entry)
        # the turn of :meth:`writing`, taken inline (this runs on every captured call)
        if not self._write_lock.acquire(timeout=self._busy_s):
            raise sqlite3.OperationalError(
                f"database is locked (another thread of this process held it for {self._busy_s:g} s)"
            )
        try:
            if entry.done:
                if entry.error is not None:
                    raise entry.error
                return
            conn = self.write_connection()
            batch = []
            while pending:
                batch.append(pending.popleft())
            try:
                if len(batch) == 1:
                    conn.execute(_INSERT_INTERACTION, batch[0].row)
                else:
                    with _transaction(conn):
                        conn.executemany(_INSERT_INTERACTION, [e.row for e in batch])
            except BaseException as exc:
                for e in batch:
                    e.error, e.done = exc, True
                raise
            for e in batch:
                e.done = True
        finally:
            self._write_lock.release()
        if self._checkpointer is not None:
            self._checkpointer.note_write(len(batch))

    def write_tool_results(self, results: Sequence[ToolResult]) -> None:
        """Insert tool results (idempotent by id), all or none."""
        with self.writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for result in results:
                    conn.execute(
                        _INSERT_TOOL_RESULT,
                        (
                            result.id,
                            result.interaction_id,
                            result.tool_call_id,
                            result.name,
                            _dumps(result.arguments),
                            result.content,
                            int(result.is_error),
                            result.duration_ms,
                            result.created_at,
                        ),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def write_tool_result(self, result: ToolResult) -> None:
        self.write_tool_results([result])

    def write_run(self, run: Run) -> None:
        """Insert or update a run (start, end, metadata)."""
        with self.writing() as conn, _transaction(conn):
            conn.execute(
                _INSERT_RUN,
                (run.id, run.call_type, run.started_at, _dumps(run.metadata) if run.metadata else None),
            )
            # the row may have been made by the run's first interaction (trigger, replay)
            conn.execute(
                "UPDATE runs SET ended_at = coalesce(?, ended_at), "
                "metadata_json = coalesce(metadata_json, ?) WHERE id = ?",
                (run.ended_at, _dumps(run.metadata) if run.metadata else None, run.id),
            )

    def bump_counter(self, name: str, amount: int = 1) -> None:
        with self.writing() as conn, _transaction(conn):
            conn.execute(
                "INSERT INTO capture_counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, amount),
            )

    # -- reading ---------------------------------------------------------

    def interaction_from_row(self, row: sqlite3.Row | dict[str, Any]) -> Interaction:
        """Rebuild an :class:`Interaction` from a row selected with :data:`INTERACTION_COLUMNS`."""
        row = dict(row)
        messages = json.loads(row["messages_json"])
        if row.get("system_prompt") is not None:
            messages.insert(0, {"role": "system", "content": row["system_prompt"]})
        data = {
            "id": row["id"],
            "run_id": row["run_id"],
            "sequence_num": row["sequence_num"],
            "call_type": row["call_type"] or "",
            "provider": row["provider"] or "",
            "model": row["model"] or "",
            "messages": messages,
            "response_content": row["response_content"],
            "tool_calls": [
                converter.unstructure(_tool_call_from_row(c))
                for c in json.loads(row["tool_calls_json"] or "[]")
            ],
            "tools": json.loads(row["tools_json"] or "[]"),
            "params": json.loads(row["params_json"] or "{}"),
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "total_tokens": row["total_tokens"],
            "duration_ms": float(row["duration_ms"] or 0.0),
            "status": row["status"],
            "error": row["error"],
            "created_at": row["created_at"],
        }
        return converter.structure(data, Interaction)

    def get_interaction(self, interaction_id: str) -> Interaction:
        row = (
            self.connection()
            .execute(
                f"SELECT {INTERACTION_COLUMNS} FROM {INTERACTION_FROM} WHERE i.id = ?",
                (interaction_id,),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no interaction with id {interaction_id!r} in {self.path}")
        return self.interaction_from_row(row)

    def iter_interactions(
        self,
        where: str = "1",
        params: Sequence[Any] | dict[str, Any] = (),
        order_by: str = "i.created_at, i.rowid",
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> Iterator[Interaction]:
        """Stream interactions matching an SQL ``where`` clause (over alias ``i``)."""
        sql = f"SELECT {INTERACTION_COLUMNS} FROM {INTERACTION_FROM} WHERE {where} ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cursor = self.connection().execute(sql, params)
        while True:
            rows = cursor.fetchmany(batch_size)
            if not rows:
                return
            for row in rows:
                yield self.interaction_from_row(row)

    def run_interactions(self, run_id: str) -> list[Interaction]:
        return list(
            self.iter_interactions("i.run_id = ?", (run_id,), order_by="i.sequence_num, i.rowid")
        )

    def get_run(self, run_id: str) -> Run:
        row = self.connection().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run with id {run_id!r} in {self.path}")
        return _run_from_row(row)

    def iter_runs(self, limit: int | None = None) -> Iterator[Run]:
        sql = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in self.connection().execute(sql):
            yield _run_from_row(row)

    def tool_results(self, interaction_id: str) -> list[ToolResult]:
        rows = self.connection().execute(
            "SELECT * FROM tool_results WHERE interaction_id = ? ORDER BY created_at, rowid",
            (interaction_id,),
        )
        return [_tool_result_from_row(row) for row in rows]

    def counters(self) -> dict[str, int]:
        return {
            row["name"]: row["value"]
            for row in self.connection().execute("SELECT name, value FROM capture_counters")
        }

    def count(self, table: str = "interactions") -> int:
        if table not in {"interactions", "runs", "tool_results", "annotations", "blobs"}:
            raise ValueError(f"unknown table {table!r}")
        return self.connection().execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def integrity_check(self) -> str:
        return self.connection().execute("PRAGMA integrity_check").fetchone()[0]


class _Pending:
    """An interaction row waiting for the group commit."""

    __slots__ = ("done", "error", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


class _Checkpointer:
    """WAL checkpoints on a background thread, every :attr:`EVERY` writes.

    Writers set ``wal_autocheckpoint = 0`` so no capture call is ever the one
    that pays for copying the WAL back into the database; a PASSIVE checkpoint
    never blocks writers.
    """

    EVERY = 400

    def __init__(self, store: Store) -> None:
        self.path = store.path
        self._writes = 0
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False

    def note_write(self, count: int = 1) -> None:
        self._writes += count
        if self._writes >= self.EVERY:
            self._writes = 0
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="wilson-checkpoint", daemon=True
                )
                self._thread.start()
            self._event.set()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout_ms() / 1000, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stopping:
                self._event.wait()
                self._event.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass
        finally:
            conn.close()

    def stop(self) -> None:
        """Run a last checkpoint and end the thread (a later write starts it again)."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._stopping = True
        self._event.set()
        thread.join(timeout=5)
        self._stopping = False
        self._thread = None


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` / ``ROLLBACK`` on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def transaction(conn: sqlite3.Connection) -> _transaction:
    """A write transaction on ``conn`` (use as a context manager)."""
    return _transaction(conn)


def _run_from_row(row: sqlite3.Row) -> Run:
    return converter.structure(
        {
            "id": row["id"],
            "call_type": row["call_type"] or "",
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "metadata": json.loads(row["metadata_json"] or "{}"),
            "deleted": row["deleted_at"] is not None,
        },
        Run,
    )


def _tool_result_from_row(row: sqlite3.Row) -> ToolResult:
    return converter.structure(
        {
            "id": row["id"],
            "interaction_id": row["interaction_id"],
            "tool_call_id": row["tool_call_id"] or "",
            "name": row["tool_name"] or "",
            "arguments": json.loads(row["arguments_json"] or "{}"),
            "content": row["content"] or "",
            "is_error": bool(row["is_error"]),
            "duration_ms": row["duration_ms"],
            "created_at": row["created_at"],
        },
        ToolResult,
    )
