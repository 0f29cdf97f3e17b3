"""Inspecting a database while another connection checkpoints it never calls it malformed.

Opening a database inspects its tables first.  Read as an ``immutable`` file while a
write-ahead log was beside it, a checkpoint copying pages at that moment made a sound
database look "malformed"; it is read with its log, under SQLite's locks.
"""

from __future__ import annotations

import sqlite3
import threading

from wilson_core.store import open_store
from wilson_core.store.connections import inspect_sqlite


def test_inspecting_while_a_checkpoint_copies_pages_sees_the_tables(tmp_path):
    db = tmp_path / "busy.db"
    open_store(db).close()
    stop = threading.Event()

    def churn() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS filler (n INTEGER, pad TEXT)")
        n = 0
        while not stop.is_set():
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO filler VALUES (?, ?)", ((n + k, "x" * 500) for k in range(200)))
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            n += 200
        conn.close()

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(300):
            tables, wilson = inspect_sqlite(db)
            assert wilson and "interactions" in tables
    finally:
        stop.set()
        writer.join()
