"""The capture sink's background checkpoints keep the SQLite WAL from growing without end."""

from __future__ import annotations

import sqlite3
import struct

import pytest

import wilson_core
from wilson_core.store import sink
from wilson_core.store.checkpoints import _Checkpointer


@pytest.fixture
def fresh_sink(monkeypatch):
    monkeypatch.delenv("WILSON_DB", raising=False)
    sink.forget_stores()
    yield
    sink.forget_stores()


def _wal_salt(path) -> bytes:
    """The WAL header's salts: SQLite changes them each time it writes the WAL from its start again."""
    with open(f"{path}-wal", "rb") as wal:
        header = wal.read(32)
    assert struct.unpack(">I", header[:4])[0] in (0x377F0682, 0x377F0683), "not a WAL file"
    return header[16:24]


def test_steady_capture_restarts_the_wal_instead_of_growing_it(tmp_path, fresh_sink):
    """Calls one after the other, with no pause for a checkpoint to catch up.

    The background checkpoint used to copy frames while new ones kept coming,
    so the WAL was never all copied when a write began, never started over,
    and grew by every call (here ~30 KB each) for as long as the app ran.
    """
    path = tmp_path / "steady.db"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["the answer"], cycle=True)
    calls = 6 * _Checkpointer.EVERY
    salts, ids = set(), []
    for n in range(calls):
        ids.append(llm.chat([{"role": "system", "content": "You are terse."},
                             {"role": "user", "content": f"question {n}"}]).interaction_id)
        if n == 99:  # before the first checkpoint: what a call adds to the WAL
            per_call = (tmp_path / "steady.db-wal").stat().st_size / 100
        if n % 50 == 49:
            salts.add(_wal_salt(path))
    wal_bytes = (tmp_path / "steady.db-wal").stat().st_size
    sink.forget_stores()
    assert len(salts) >= 3, f"the WAL started over {len(salts) - 1} time(s) in {calls} calls"
    # without the restarts it holds every call's frames: 6 checkpoint rounds' worth
    assert wal_bytes < 3 * _Checkpointer.EVERY * per_call, (wal_bytes, per_call)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM interactions")}
    finally:
        conn.close()
    assert stored == set(ids)
