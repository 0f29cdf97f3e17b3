"""The read path of :class:`~wilson_core.store.store.Store`: interactions, runs, tool results, counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wilson_core.errors import NotFound
from wilson_core.records import Interaction, Run, ToolResult

from .rows import (
    INTERACTION_COLUMNS,
    INTERACTION_FROM,
    _run_from_row,
    _tool_result_from_row,
    interaction_from_row,
)


class ReadPath:
    """The reads of :class:`~wilson_core.store.store.Store`, each on this thread's connection."""

    path: Path

    def interaction_from_row(self, row: sqlite3.Row | dict[str, Any]) -> Interaction:
        """Rebuild an :class:`Interaction` from a row selected with :data:`INTERACTION_COLUMNS`."""
        return interaction_from_row(row)

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
        where: str = "1 = 1",
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

    dialect = "sqlite"

    def integrity_check(self) -> str:
        return self.connection().execute("PRAGMA integrity_check").fetchone()[0]
