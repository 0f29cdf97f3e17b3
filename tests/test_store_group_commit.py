"""The capture path's group commit: every writer's row lands once; a failed batch fails every writer in it.

Many threads write through one store's write connection at once: a lone writer inserts
its row directly, the others queue their rows behind whoever holds the write turn, which
commits them together.  No row may be lost or written twice, and no writer may be told
its row was written when the batch that carried it failed (the sink spools on failure).
"""

from __future__ import annotations

import sqlite3
import threading

from wilson_core.records import Interaction, new_id
from wilson_core.store import open_store

THREADS = 8


def _call(n: int) -> Interaction:
    return Interaction(
        run_id=new_id(), sequence_num=1, call_type="agent", provider="scripted", model="m",
        messages=[{"role": "system", "content": "S" * 500}, {"role": "user", "content": f"question {n}"}],
        response_content="ok", tools=[{"type": "function", "function": {"name": "lookup"}}],
    )


def _write_from_threads(store, calls: list[list[Interaction]]) -> list[BaseException]:
    """Each thread writes its calls one by one, all threads starting together; the errors raised."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(calls))

    def work(mine: list[Interaction]) -> None:
        start.wait()
        for interaction in mine:
            try:
                store.write_interaction(interaction)
            except Exception as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a writer never got its turn"
    return errors


def _stored(path, table: str = "interactions") -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"SELECT id FROM {table}")]  # noqa: S608 (test table names)
    finally:
        conn.close()


def test_concurrent_writers_each_get_their_row_stored_exactly_once(tmp_path):
    path = tmp_path / "d.db"
    store = open_store(path)
    seed = _call(-1)
    store.write_interaction(seed)  # its blobs are stored: the calls below take the group-commit path
    calls = [[_call(t * 1000 + n) for n in range(120)] for t in range(THREADS)]
    assert _write_from_threads(store, calls) == []
    stored = _stored(path)
    assert len(stored) == len(set(stored))
    assert set(stored) == {seed.id} | {c.id for mine in calls for c in mine}
    assert _write_from_threads(store, calls) == []  # the same calls again: nothing added
    assert len(_stored(path)) == len(stored)
    store.close()


def test_a_failed_batch_fails_every_writer_in_it_and_the_next_ones_write_again(tmp_path):
    path = tmp_path / "d.db"
    store = open_store(path)
    store.write_interaction(_call(-1))
    with store.writing() as conn:  # the table goes away under the writers
        conn.execute("ALTER TABLE interactions RENAME TO interactions_away")
    failing = [[_call(t * 1000 + n) for n in range(40)] for t in range(THREADS)]
    errors = _write_from_threads(store, failing)
    assert len(errors) == THREADS * 40  # every writer was told: none believes its row is stored
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors)
    with store.writing() as conn:
        conn.execute("ALTER TABLE interactions_away RENAME TO interactions")
    assert not {c.id for mine in failing for c in mine} & set(_stored(path))
    working = [[_call(100_000 + t * 1000 + n) for n in range(40)] for t in range(THREADS)]
    assert _write_from_threads(store, working) == []
    assert {c.id for mine in working for c in mine} <= set(_stored(path))
    store.close()
