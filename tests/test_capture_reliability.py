"""Capture never breaks the app's call, never loses a record, and survives crashes and concurrency.

Failing databases are real: a lock held by another connection, a read-only
file, a folder that cannot exist, a database full at ``max_page_count``, a
corrupt file, a process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types

import pytest

import wilson_core
from wilson_core import plugins
from wilson_core.cli.capture import collect_stats
from wilson_core.errors import PluginError, StoreError
from wilson_core.store import open_store, sink, spool

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "fallback-spool"))
    monkeypatch.setenv("WILSON_BUSY_TIMEOUT_MS", "100")
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "0")
    monkeypatch.delenv("WILSON_DB", raising=False)
    sink.forget_stores()
    yield tmp_path
    sink.forget_stores()


def llm_for(path, **options):
    return wilson_core.LLM("scripted:m", db=str(path), script=["the answer"], cycle=True, **options)


def assert_spooled_then_replayed(path, reply, spooled=1):
    """The record waits in a spool; the next open writes it and counts it."""
    assert spool.pending(path) == spooled
    sink.forget_stores()
    store = open_store(path)
    assert store.get_interaction(reply.interaction_id).response_content == "the answer"
    assert spool.pending(path) == 0
    stats = collect_stats(store)["capture"]
    assert (stats["spooled"], stats["replayed"], stats["spooled_pending"]) == (spooled, spooled, 0)
    return store


# -- a failing sink -----------------------------------------------------------------


def test_a_sink_that_raises_leaves_the_result_intact_and_is_counted(env, caplog):
    reports = []
    broken, listener = types.SimpleNamespace(), types.SimpleNamespace()

    @wilson_core.hookimpl
    def wilson_capture_interaction(interaction):
        raise RuntimeError("sink exploded")

    @wilson_core.hookimpl
    def wilson_capture_failed(record, sink, error):
        reports.append((record.id, sink, str(error)))

    broken.wilson_capture_interaction = wilson_capture_interaction
    listener.wilson_capture_failed = wilson_capture_failed
    pm = plugins.plugin_manager()
    pm.register(broken, name="broken-sink")
    pm.register(listener, name="failure-listener")
    try:
        llm = llm_for(env / "d.db")
        with caplog.at_level("WARNING", logger="wilson"):
            reply = llm.chat(ASK)
        assert re.search("broken-sink.*sink exploded", caplog.text)
    finally:
        pm.unregister(name="broken-sink")
        pm.unregister(name="failure-listener")
    assert reply.text == "the answer"
    assert llm.capture_failures == 1
    assert reports == [(reply.interaction_id, "broken-sink", "sink exploded")]
    # the other sinks still ran: the SQLite sink stored the call, and counted the failure
    store = open_store(env / "d.db")
    assert store.get_interaction(reply.interaction_id).status == "ok"
    assert collect_stats(store)["capture"]["sink_failures"] == 1


# -- databases that cannot be written ------------------------------------------------------


def test_a_locked_database_spools_the_call_and_replays_it(env):
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat(ASK)  # the store is open and working
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        reply = llm.chat(ASK)
        waited = time.perf_counter() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert reply.text == "the answer" and waited < 2.0  # the busy timeout, not forever
    assert spool.pending(path) == 1
    later = llm.chat(ASK)  # the database is back: this call also replays the spool
    store = open_store(path)
    for r in (reply, later):
        assert store.get_interaction(r.interaction_id)
    assert collect_stats(store)["capture"]["replayed"] == 1 and spool.pending(path) == 0


def test_a_run_started_while_the_database_is_locked_keeps_its_metadata(env):
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat(ASK)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with llm.run(call_type="agent", metadata={"user": "u1"}) as run:
            reply = run.chat(ASK)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert reply.text == "the answer"
    assert spool.pending(path) == 3  # run start, the call, run end
    sink.forget_stores()
    store = open_store(path)
    saved = store.get_run(run.id)
    assert saved.metadata == {"user": "u1"} and saved.ended_at is not None
    assert store.run_interactions(run.id)[0].id == reply.interaction_id
    assert collect_stats(store)["capture"]["replayed"] == 3


def test_parameters_that_are_not_json_are_kept_as_text_not_lost(env):
    class Mode:
        def __str__(self):
            return "Mode.STRICT"

    reply = llm_for(env / "d.db").chat(ASK, response_format=Mode())
    stored = open_store(env / "d.db").get_interaction(reply.interaction_id)
    assert stored.params == {"response_format": "Mode.STRICT"}


def _make_read_only(path):
    """Make ``path`` unwritable even for root (chattr +i); ``None`` when impossible here."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run([chattr, "-i", str(path)], check=True)
    return None


def test_a_read_only_database_file_spools_the_call(env):
    path = env / "d.db"
    open_store(path).write_interaction(
        wilson_core.Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p",
                                model="m", messages=[{"role": "user", "content": "old"}]))
    sink.forget_stores()
    undo = _make_read_only(path)
    if undo is None:
        pytest.skip("cannot make a file read-only for this user on this file system")
    try:
        reply = llm_for(path).chat(ASK)
        assert reply.text == "the answer"
        assert spool.pending(path) == 1
    finally:
        undo()
    assert_spooled_then_replayed(path, reply)


def test_a_folder_that_cannot_be_created_spools_to_the_fallback_and_replays(env):
    blocker = env / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    path = blocker / "sub" / "data.db"
    reply = llm_for(path).chat(ASK)
    assert reply.text == "the answer"
    fallback = spool.spool_paths(path)[1]
    assert fallback.parent == env / "fallback-spool" and fallback.exists()
    blocker.unlink()  # the user fixes the path
    assert_spooled_then_replayed(path, reply)


def test_a_full_database_spools_the_call_and_replays_it(env):
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat(ASK)
    conn = sink.store_for(str(path)).write_connection()  # the connection capture writes with
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page: SQLITE_FULL
    big = [{"role": "user", "content": "x" * 200_000}]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        sink.store_for(str(path)).write_interaction(
            wilson_core.Interaction(run_id="probe", sequence_num=1, call_type="t", provider="p",
                                    model="m", messages=big))
    reply = llm.chat(big)
    assert reply.text == "the answer"
    store = assert_spooled_then_replayed(path, reply)
    assert len(store.get_interaction(reply.interaction_id).messages[0]["content"]) == 200_000


def test_threads_capturing_into_a_full_database_each_spool_their_own_call(env):
    import threading

    path = env / "d.db"
    llm = llm_for(path)
    llm.chat(ASK)
    conn = sink.store_for(str(path)).write_connection()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    replies, errors = [], []

    def work(t):
        for n in range(5):
            try:
                replies.append(llm.chat([{"role": "user", "content": f"{t}-{n} " + "y" * 50_000}]))
            except Exception as exc:  # must not happen: capture never breaks the call
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(replies) == 20
    sink.forget_stores()
    store = open_store(path)
    stored = {r[0] for r in store.connection().execute("SELECT id FROM interactions")}
    assert {r.interaction_id for r in replies} <= stored
    assert collect_stats(store)["capture"]["replayed"] == 20  # every one was spooled, then replayed


def test_stats_on_the_cli_shows_spooled_and_replayed_counts(env):
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat(ASK)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    llm.chat(ASK)
    llm.chat(ASK)
    holder.execute("ROLLBACK")
    holder.close()
    sink.forget_stores()
    out = subprocess.run([sys.executable, "-m", "wilson_core.cli", "--db", str(path), "stats", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["capture"] == {
        "spooled": 2, "replayed": 2, "spooled_pending": 0, "spool_unreadable": 0, "sink_failures": 0,
        "quarantined": 0, "dropped": 0}
    assert json.loads(out.stdout)["interactions"] == 3


def test_a_torn_spool_line_is_counted_and_kept_while_good_lines_replay(env, caplog):
    path = env / "d.db"
    open_store(path)
    sink.forget_stores()
    record = wilson_core.Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p",
                                     model="m", messages=[{"role": "user", "content": "spooled"}])
    spool_file = spool.append(path, record)
    with open(spool_file, "a") as handle:
        handle.write('{"kind": "interaction", "record": {"id": "torn')  # a crash mid-write
    with caplog.at_level("WARNING", logger="wilson"):
        store = open_store(path)
    assert "could not be read" in caplog.text
    assert store.get_interaction(record.id)
    assert collect_stats(store)["capture"]["spool_unreadable"] == 1
    kept = list(env.glob("d.db.spool.jsonl.unreadable-*"))
    assert len(kept) == 1 and "torn" in kept[0].read_text()


def test_a_corrupt_database_file_is_a_clear_error_and_is_left_untouched(env):
    path = env / "d.db"
    path.write_bytes(b"definitely not a database " * 200)
    before = path.read_bytes()
    reply = llm_for(path).chat(ASK)  # the app's call still works; the capture waits in the spool
    assert reply.text == "the answer" and spool.pending(path) == 1
    with pytest.raises(StoreError, match="not a usable Wilson database.*left untouched"):
        open_store(path)
    assert path.read_bytes() == before
    assert spool.pending(path) == 1  # still kept for when the user moves the file aside


# -- concurrency and crashes ---------------------------------------------------------


CHILD = textwrap.dedent(
    """
    import json, sys, threading, wilson_core
    db, threads, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = wilson_core.LLM("scripted:m", db=db, script=["ok"], cycle=True)
    ids, errors, lock = [], [], threading.Lock()
    def work(t):
        for n in range(calls):
            try:
                reply = llm.chat([{"role": "system", "content": "S" * 2000},
                                  {"role": "user", "content": f"{t}-{n}"}])
                with lock:
                    ids.append(reply.interaction_id)
            except Exception as exc:
                errors.append(repr(exc))
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    print(json.dumps({"ids": ids, "errors": errors, "failures": llm.capture_failures}))
    """
)


def test_four_threads_in_two_processes_capture_everything_exactly_once(env):
    path = env / "d.db"
    open_store(path)
    child_env = {**os.environ, "WILSON_BUSY_TIMEOUT_MS": "5000"}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(path), "4", "150"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err
        assert "database is locked" not in err
        results.append(json.loads(out))
    ids = [i for r in results for i in r["ids"]]
    assert sum(len(r["errors"]) for r in results) == 0
    assert len(ids) == len(set(ids)) == 2 * 4 * 150
    sink.forget_stores()
    store = open_store(path)
    assert store.count() == 1200
    stored = {r[0] for r in store.connection().execute("SELECT id FROM interactions")}
    assert stored == set(ids)
    assert store.count("runs") == 1200 and store.integrity_check() == "ok"


LOOP = textwrap.dedent(
    """
    import sys, wilson_core
    llm = wilson_core.LLM("scripted:m", db=sys.argv[1], script=["ok"], cycle=True)
    n = 0
    while True:
        n += 1
        with llm.run() as run:
            reply = run.chat([{"role": "user", "content": "call %d " % n + "x" * 3000}])
        print(reply.interaction_id, flush=True)
    """
)


def test_a_process_killed_mid_capture_leaves_a_sound_database_with_every_returned_call(env):
    path = env / "d.db"
    child = subprocess.Popen([sys.executable, "-c", LOOP, str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    returned = []
    try:
        while len(returned) < 300:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            returned.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    store = open_store(path)
    assert store.integrity_check() == "ok"
    stored = {r[0] for r in store.connection().execute("SELECT id FROM interactions")}
    assert set(returned) <= stored


# -- bad input -------------------------------------------------------------------------


def test_non_utf8_bytes_and_lone_surrogates_are_stored_safely(env):
    path = env / "d.db"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["bad \udcff answer"])
    reply = llm.chat([{"role": "user", "content": b"caf\xe9 \xff bytes"},
                      {"role": "user", "content": "lone \ud800 surrogate"}])
    assert reply.text == "bad \ufffd answer"
    stored = open_store(path).get_interaction(reply.interaction_id)
    assert stored.messages[0]["content"] == "caf\ufffd \ufffd bytes"
    assert stored.messages[1]["content"] == "lone \ufffd surrogate"
    stored.messages[1]["content"].encode("utf-8")  # valid UTF-8 now
    assert stored.response_content == reply.text


def test_a_five_megabyte_prompt_is_captured_whole(env):
    path = env / "d.db"
    prompt = ("0123456789abcdef" * 65536) * 5  # 5 MiB
    reply = llm_for(path).chat([{"role": "user", "content": prompt}])
    stored = open_store(path).get_interaction(reply.interaction_id)
    assert stored.user_prompt == prompt


def test_an_unknown_provider_name_is_a_clear_error_listing_the_names(env):
    with pytest.raises(PluginError, match=r"unknown name 'gpt5' .*available: .*openai.*scripted"):
        wilson_core.LLM("gpt5:latest", db=str(env / "d.db"))
