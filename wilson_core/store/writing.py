"""The write path of :class:`~wilson_core.store.store.Store`: captures, tool results, runs, counters.

A single captured call is one ``INSERT`` joining a group commit; several
interactions, or ones whose blobs are new, are written in one transaction.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from wilson_core.records import Annotation, Interaction, Run, ToolResult

from .connections import _transaction
from .encoding import ToolsMemo, _dumps, _is_plain_system, _tool_call_dict, sha256
from .labels import INSERT_ANNOTATION, INSERT_PAIR, annotation_row

if TYPE_CHECKING:
    from .checkpoints import _Checkpointer

_INSERT_INTERACTION = """
INSERT OR IGNORE INTO interactions (
    id, run_id, sequence_num, call_type, model, provider, system_hash, user_prompt,
    messages_json, response_content, tool_calls_json, tools_hash, params_json,
    input_tokens, output_tokens, total_tokens, duration_ms, status, error, created_at,
    context_hash, ttft_ms
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (id, call_type, started_at, metadata_json) VALUES (?, ?, ?, ?)"
)
_INSERT_FULL_RUN = (
    "INSERT OR IGNORE INTO runs (id, call_type, started_at, ended_at, metadata_json) "
    "VALUES (?, ?, ?, ?, ?)"
)
#: a run row may have been made by its first interaction: the end and metadata come later.
_UPDATE_RUN = (
    "UPDATE runs SET ended_at = coalesce(?, ended_at), "
    "metadata_json = coalesce(metadata_json, ?) WHERE id = ?"
)
_BUMP_COUNTER = (
    "INSERT INTO capture_counters (name, value) VALUES (?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = capture_counters.value + excluded.value"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, kind, content) VALUES (?, ?, ?)"
_INSERT_TOOL_RESULT = """
INSERT OR IGNORE INTO tool_results (
    id, interaction_id, tool_call_id, tool_name, arguments_json, content, is_error,
    duration_ms, created_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


@frozen
class Batch:
    """Records to write together, all or none (:meth:`WritePath.write_batch`).

    ``pairs`` are objects with ``id, chosen_id, rejected_id, source, annotator,
    created_at`` (and optionally ``undone_at``); ``undone`` maps annotation ids
    to the time they were undone; ``counters`` are added to ``capture_counters``.
    """

    runs: Sequence[Run] = ()
    interactions: Sequence[Interaction] = ()
    tool_results: Sequence[ToolResult] = ()
    annotations: Sequence[Annotation] = ()
    pairs: Sequence[Any] = ()
    undone: Mapping[str, str] = field(factory=dict)
    counters: Mapping[str, int] = field(factory=dict)


def tool_result_row(result: ToolResult) -> tuple[Any, ...]:
    return (
        result.id, result.interaction_id, result.tool_call_id, result.name, _dumps(result.arguments),
        result.content, int(result.is_error), result.duration_ms, result.created_at,
    )


class _Pending:
    """An interaction row waiting for the group commit."""

    __slots__ = ("done", "error", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


class WritePath:
    """The capture path of :class:`~wilson_core.store.store.Store` (which opens the connections)."""

    _write_lock: threading.Lock
    _busy_s: float
    _pending: collections.deque[_Pending]
    _known_blobs: set[str]
    _system_hashes: dict[str, str]
    _checkpointer: _Checkpointer | None
    _tools_memo: ToolsMemo | None = None  # made on first use (the stores' __init__ need not know)

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
            memo = self._tools_memo
            if memo is None:
                memo = self._tools_memo = ToolsMemo()
            tools_json, tools_hash = memo.encode(interaction.tools)
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
            interaction.ttft_ms,
        )
        return row, blobs

    def write_interaction(self, interaction: Interaction, run: Run | None = None) -> None:
        """Durably insert one interaction (idempotent: the same id twice is one row)."""
        if run is None:  # the capture path: one call, its blobs (nearly always) stored already
            row, blobs = self.interaction_row(interaction)
            known = self._known_blobs
            for _, _, digest in blobs:
                if digest not in known:
                    break
            else:
                self._group_insert(row)
                return
            self._write_prepared([(interaction, row, blobs)], None)
        else:
            self.write_interactions([interaction], runs={interaction.run_id: run})

    def write_interactions(
        self, interactions: Sequence[Interaction], runs: dict[str, Run | None] | None = None
    ) -> None:
        """Insert several interactions in one transaction (all or none)."""
        if len(interactions) == 1 and not runs:
            self.write_interaction(interactions[0])
            return
        self._write_prepared([(i, *self.interaction_row(i)) for i in interactions], runs)

    def _write_prepared(
        self, prepared: list[tuple[Interaction, tuple[Any, ...], list[tuple]]], runs: dict[str, Run | None] | None
    ) -> None:
        """Write interactions with their rows and blobs (and run rows) in one transaction."""
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
        pending = self._pending
        lock = self._write_lock
        entry: _Pending | None = None
        if pending or not lock.acquire(False):  # others write or wait: queue up behind them
            entry = _Pending(row)
            pending.append(entry)
            # the turn of :meth:`writing`, taken inline (this runs on every captured call)
            if not lock.acquire(timeout=self._busy_s):
                raise sqlite3.OperationalError(
                    f"database is locked (another thread of this process held it for {self._busy_s:g} s)"
                )
        try:
            if entry is not None and entry.done:
                if entry.error is not None:
                    raise entry.error
                return
            conn = self.write_connection()
            batch = []
            while pending:
                batch.append(pending.popleft())
            rows = [e.row for e in batch] if entry is not None else [row, *(e.row for e in batch)]
            try:
                if len(rows) == 1:
                    conn.execute(_INSERT_INTERACTION, rows[0])
                else:
                    with _transaction(conn):
                        conn.executemany(_INSERT_INTERACTION, rows)
            except BaseException as exc:
                for e in batch:
                    e.error, e.done = exc, True
                raise
            for e in batch:
                e.done = True
        finally:
            lock.release()
        if self._checkpointer is not None:
            self._checkpointer.note_write(len(rows))

    def write_tool_results(self, results: Sequence[ToolResult]) -> None:
        """Insert tool results (idempotent by id), all or none."""
        with self.writing() as conn, _transaction(conn):
            conn.executemany(_INSERT_TOOL_RESULT, [tool_result_row(r) for r in results])

    def write_tool_result(self, result: ToolResult) -> None:
        self.write_tool_results([result])

    def write_run(self, run: Run) -> None:
        """Insert or update a run (start, end, metadata)."""
        with self.writing() as conn, _transaction(conn):
            metadata = _dumps(run.metadata) if run.metadata else None
            conn.execute(_INSERT_RUN, (run.id, run.call_type, run.started_at, metadata))
            # the row may have been made by the run's first interaction (trigger, replay)
            conn.execute(_UPDATE_RUN, (run.ended_at, metadata, run.id))

    def mark_run_deleted(self, run_id: str, when: str) -> None:
        """Mark a run deleted at ``when``: its calls are no longer exported, shown or labelled."""
        with self.writing() as conn, _transaction(conn):
            conn.execute("UPDATE runs SET deleted_at = ? WHERE id = ?", (when, run_id))

    def bump_counter(self, name: str, amount: int = 1) -> None:
        with self.writing() as conn, _transaction(conn):
            conn.execute(_BUMP_COUNTER, (name, amount))

    def write_captures(self, records: Sequence[Interaction | ToolResult | Run]) -> None:
        """Write captured records in one transaction, in the order given (all or none).

        The background writer's batch: each row is built just before its
        ``INSERT``, so the statements (which let other Python threads run)
        come often and the app's threads never wait long for this one.
        """
        with self.writing() as conn, _transaction(conn):
            written = []
            for record in records:
                if isinstance(record, Interaction):
                    row, blobs = self.interaction_row(record)
                    for kind, content, digest in blobs:
                        self._blob(conn, kind, content, digest)
                    written.append(blobs)
                    conn.execute(_INSERT_INTERACTION, row)  # the trigger makes its run row if missing
                elif isinstance(record, ToolResult):
                    conn.execute(_INSERT_TOOL_RESULT, tool_result_row(record))
                else:
                    _write_run_row(conn, record)
        for blobs in written:
            self._known_blobs.update(digest for _, _, digest in blobs)
        if self._checkpointer is not None:
            self._checkpointer.note_write(len(records))

    def write_batch(self, batch: Batch) -> dict[str, int]:
        """Write every record of ``batch`` in one transaction; return how many rows were new per table.

        The one write path for records that arrive together: the capture
        spool's replay, the importers, anything that writes many records.
        Every insert is idempotent (by id; blobs by hash), so writing the same
        batch twice adds nothing; a run that exists gets its end and metadata.
        """
        prepared = [(i, *self.interaction_row(i)) for i in batch.interactions]
        added = dict.fromkeys(("runs", "interactions", "tool_results", "annotations", "pairs"), 0)
        with self.writing() as conn, _transaction(conn):
            for run in batch.runs:
                added["runs"] += _write_run_row(conn, run)
            for interaction, row, blobs in prepared:
                for kind, content, digest in blobs:
                    conn.execute(_INSERT_BLOB, (digest, kind, content))
                # (the run of a call without its own run record, as the capture path makes it)
                conn.execute(_INSERT_RUN, (interaction.run_id, interaction.call_type, interaction.created_at, None))
                added["interactions"] += conn.execute(_INSERT_INTERACTION, row).rowcount
            for result in batch.tool_results:
                added["tool_results"] += conn.execute(_INSERT_TOOL_RESULT, tool_result_row(result)).rowcount
            for pair in batch.pairs:
                added["pairs"] += conn.execute(
                    INSERT_PAIR,
                    (pair.id, pair.chosen_id, pair.rejected_id, pair.source, pair.annotator,
                     pair.created_at, getattr(pair, "undone_at", None)),
                ).rowcount
            for annotation in batch.annotations:
                added["annotations"] += conn.execute(
                    INSERT_ANNOTATION, annotation_row(annotation, batch.undone.get(annotation.id))
                ).rowcount
            for name, amount in batch.counters.items():
                if amount:
                    conn.execute(_BUMP_COUNTER, (name, amount))
        for _, _, blobs in prepared:
            self._known_blobs.update(digest for _, _, digest in blobs)
        return added


def _write_run_row(conn: Any, run: Run) -> int:
    """Insert ``run`` whole, or give an existing row its end and metadata; 1 when it was new."""
    metadata = _dumps(run.metadata) if run.metadata else None
    count = conn.execute(_INSERT_FULL_RUN, (run.id, run.call_type, run.started_at, run.ended_at, metadata)).rowcount
    if not count:
        conn.execute(_UPDATE_RUN, (run.ended_at, metadata, run.id))
    return count
