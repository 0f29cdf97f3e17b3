"""``WILSON_CAPTURE_WRITE=background``: captures written by a writer thread, off the app's thread.

What holds in this mode: every call the app made is stored once, its run
rows complete, after :func:`wilson_core.store.sink.flush` or a normal exit;
a batch the database cannot take goes to the spool and replays as a failed
synchronous write does; a fork while a batch is being written does not hang
the child.  What does not hold, by design: records still queued when the
process is killed are lost (docs/capture.md, "Writing off the app's thread").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

import wilson_core
from wilson_core.store import background, open_store, sink, spool


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("WILSON_CAPTURE_WRITE", "background")
    monkeypatch.setenv("WILSON_BUSY_TIMEOUT_MS", "100")
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "0.05")
    monkeypatch.delenv("WILSON_DB", raising=False)
    sink.forget_stores()
    yield tmp_path / "data.db"
    sink.forget_stores()


def counts(path) -> tuple[int, int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[return-value]
                     for table in ("interactions", "runs", "tool_results"))
    finally:
        conn.close()


def ended_runs(path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(ended_at) FROM runs").fetchone()[0]
    finally:
        conn.close()


def test_the_mode_is_read_from_the_environment_and_an_unknown_value_means_sync(monkeypatch, caplog):
    monkeypatch.delenv("WILSON_CAPTURE_WRITE", raising=False)
    assert background.mode() == "sync"
    monkeypatch.setenv("WILSON_CAPTURE_WRITE", " Background ")
    assert background.mode() == "background"
    monkeypatch.setenv("WILSON_CAPTURE_WRITE", "later-please")
    with caplog.at_level(logging.WARNING, logger="wilson.capture"):
        assert background.mode() == "sync"
    assert "later-please" in caplog.text and "synchronously" in caplog.text


def test_calls_from_many_threads_are_all_stored_once_with_their_runs(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    returned: list[str] = []

    def work(t: int) -> None:
        for n in range(25):
            with wilson_core.run(call_type="agent", metadata={"thread": t}):
                returned.append(llm.chat([{"role": "user", "content": f"{t} {n} a"}]).interaction_id)
                returned.append(llm.chat([{"role": "user", "content": f"{t} {n} b"}]).interaction_id)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.flush()
    assert sink.capture_state()["background_queued"] == 0
    store = open_store(db)
    try:
        conn = store.connection()
        assert sorted(r[0] for r in conn.execute("SELECT id FROM interactions")) == sorted(returned)
        runs = conn.execute("SELECT count(*), count(ended_at), count(metadata_json) FROM runs").fetchone()
        assert tuple(runs) == (100, 100, 100)
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_tool_results_are_written_with_the_call_they_answer(db):
    asked = [{"role": "user", "content": "look it up"}]
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    with wilson_core.run(call_type="agent", db=str(db)):
        first = wilson_core.record_call(provider="scripted", model="m", messages=asked, tool_calls=[call])
        wilson_core.record_call(
            provider="scripted", model="m", content="it is 42",
            messages=[*asked, {"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        )
    sink.flush()
    assert counts(db) == (2, 1, 1)
    store = open_store(db)
    try:
        assert [r.content for r in store.tool_results(first.id)] == ["42"]
    finally:
        store.close()


def test_a_batch_the_database_cannot_take_goes_to_the_spool_and_replays(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    returned = [llm.chat([{"role": "user", "content": "first"}]).interaction_id]
    sink.flush()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        returned += [llm.chat([{"role": "user", "content": f"locked {n}"}]).interaction_id for n in range(20)]
        sink.flush()  # the writer's batch fails on the lock: every record goes the synchronous way
        assert spool.pending(db) == 20
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sink.forget_stores()  # the next open replays the spool
    store = open_store(db)
    try:
        assert sorted(i.id for i in store.iter_interactions()) == sorted(returned)
    finally:
        store.close()


def test_a_normal_exit_writes_what_the_writer_had_not_reached(db, tmp_path):
    # The writer thread is kept from starting, so every record is still queued at exit.
    app = textwrap.dedent(
        """
        import sys
        import wilson_core
        from wilson_core.store import sink
        sink.background_writer._start_thread = lambda: None
        llm = wilson_core.LLM("scripted:m", db=sys.argv[1], script=["ok"], cycle=True)
        with wilson_core.run(call_type="agent"):
            for n in range(300):
                llm.chat([{"role": "user", "content": str(n)}])
        print(sink.capture_state()["background_queued"])
        """
    )
    out = subprocess.run([sys.executable, "-c", app, str(db)], env=os.environ.copy(), capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["302"]  # the run's start and end, and its 300 calls
    assert counts(db) == (300, 1, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_while_a_batch_is_written_does_not_hang_the_child(db):
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    llm.chat([{"role": "user", "content": "before the fork"}])
    sink.flush()
    with sink.background_writer._writing:  # as if the writer thread were in the middle of a batch
        pid = os.fork()
        if pid == 0:  # the child: a call and a normal exit (its exit handler flushes)
            try:
                llm.chat([{"role": "user", "content": "in the child"}])
                sink.flush()
                code = 0 if counts(db)[0] == 2 else 1
            except BaseException:
                code = 2
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_writer_that_falls_behind_makes_the_app_write_the_queue_in_order(db, monkeypatch):
    # No writer thread and a queue of 5: every sixth call writes the queue on the app's thread.
    writer = background.BackgroundWriter(sink._write_many)
    monkeypatch.setenv("WILSON_CAPTURE_QUEUE", "5")
    monkeypatch.setattr(writer, "_start_thread", lambda: None)
    monkeypatch.setattr(sink, "background_writer", writer)
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    seen = []
    with wilson_core.run(call_type="agent"):
        for n in range(17):
            llm.chat([{"role": "user", "content": str(n)}])
            seen.append(len(writer))
    assert max(seen) <= 5 and counts(db) == (17, 1, 0)  # the sixth record each time wrote the queue
    assert len(writer) == 1 and ended_runs(db) == 0  # the run's end, queued when the run closed
    writer.flush()
    assert len(writer) == 0 and ended_runs(db) == 1
    store = open_store(db)
    try:
        assert [i.user_prompt for i in store.iter_interactions(order_by="i.created_at, i.rowid")] == [
            str(n) for n in range(17)]
    finally:
        store.close()


def test_after_a_failure_captures_go_to_the_spool_without_trying_the_database_each_call(db, monkeypatch):
    # A server that is down can take seconds per connection attempt: one failed attempt, then the spool.
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "30")
    attempts = []
    real_store_for = sink.store_for

    def unreachable(db_path):
        attempts.append(db_path)
        raise OSError("connection refused")

    monkeypatch.setattr(sink, "store_for", unreachable)
    llm = wilson_core.LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    returned = [llm.chat([{"role": "user", "content": str(n)}]).interaction_id for n in range(10)]
    assert len(attempts) <= 2 and spool.pending(db) == 10 and len(sink.background_writer) == 0
    monkeypatch.setattr(sink, "store_for", real_store_for)
    sink.forget_stores()
    store = open_store(db)  # the next open replays the spool
    try:
        assert sorted(i.id for i in store.iter_interactions()) == sorted(returned)
    finally:
        store.close()
