"""Fault injection: every call the app saw returned is in the database or in a spool that replays,
and ``wilson stats`` accounts for everything else.

Faults are real where the machine allows: a full tmpfs and a read-only remount
when running as root (CI containers), ``chmod`` otherwise; the database deleted
and replaced under a running app; a lock held past the busy timeout; processes
of four threads killed with SIGKILL mid-loop.  Where a real full disk cannot be
made (no root), ``ENOSPC`` is injected at the same call sites: SQLite's write
(``max_page_count``) and the spool's ``os.write``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import wilson_core
from wilson_core.cli.capture import collect_stats
from wilson_core.store import open_store, sink, spool

ID = re.compile(r"^[0-9a-f]{32}$")


def _can_mount() -> bool:
    if os.name != "posix" or os.geteuid() != 0:
        return False
    probe = f"/tmp/wilson-mount-probe-{os.getpid()}"
    os.makedirs(probe, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                              capture_output=True, timeout=10)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", probe], capture_output=True, timeout=10)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


CAN_MOUNT = _can_mount()


@contextlib.contextmanager
def tmpfs(path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        sink.forget_stores()
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "fallback-spool"))
    monkeypatch.setenv("WILSON_BUSY_TIMEOUT_MS", "100")
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "0.05")
    monkeypatch.delenv("WILSON_DB", raising=False)
    sink.forget_stores()
    yield tmp_path
    sink.forget_stores()
    sink.memory_queue.items.clear()
    sink.memory_queue.dropped.clear()
    sink.memory_queue.dropped_total = 0


def llm_for(path, reply="the answer"):
    return wilson_core.LLM("scripted:m", db=str(path), script=[reply], cycle=True)


def stored_ids(path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM interactions")}
    finally:
        conn.close()


def assert_all_kept(path, returned: list[str], *, exact: bool = True) -> dict:
    """Replay what waits, then: integrity ok, every returned call stored once, stats account for the rest."""
    sink.forget_stores()
    store = open_store(path)
    conn = store.connection()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = [row[0] for row in conn.execute("SELECT id FROM interactions")]
    assert len(ids) == len(set(ids)), "a call stored twice"
    missing = set(returned) - set(ids)
    assert not missing, f"{len(missing)} returned call(s) lost"
    if exact:
        assert len(ids) == len(set(returned))
    capture = collect_stats(store)["capture"]
    assert capture["spooled_pending"] == 0 and capture["dropped"] == 0
    assert capture["spooled"] == capture["replayed"] + capture["spool_unreadable"] + capture["quarantined"]
    return capture


# -- disk full ---------------------------------------------------------------------------------


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root and mount for a real full disk")
def test_a_real_full_disk_loses_nothing_the_app_saw_returned(env):
    """The reported case: a 3 MB tmpfs, 400 calls of about 16 KB; only 43 used to arrive."""
    with tmpfs(env / "small", "3m") as small:
        path = small / "d.db"
        llm = llm_for(path, reply="r" * 8000)
        returned = [llm.chat([{"role": "user", "content": f"{n} " + "q" * 8000}]).interaction_id
                    for n in range(400)]
        assert llm.capture_failures == 0
        assert spool.pending(path) > 0  # part of it waits in the second location
        remount(small, "size=64m")  # space comes back
        capture = assert_all_kept(path, returned)
        assert capture["spooled"] > 0
        print(f"full tmpfs: {len(returned)} returned calls, all stored; capture counters {capture}")


def test_an_injected_full_disk_loses_nothing_the_app_saw_returned(env, monkeypatch):
    """ENOSPC at the same call sites: SQLite full at max_page_count, the spool's write beside it."""
    path = env / "d.db"
    llm = llm_for(path, reply="r" * 2000)
    returned = [llm.chat([{"role": "user", "content": "warm up"}]).interaction_id]
    conn = sqlite3.connect(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    real_write = spool._write_all
    beside = str(env)

    def full_beside_the_database(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(beside + "/d.db"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(spool, "_write_all", full_beside_the_database)
    store = sink.store_for(str(path))
    with store.writing() as write_conn:
        write_conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    returned += [llm.chat([{"role": "user", "content": f"{n} " + "q" * 2000}]).interaction_id for n in range(60)]
    assert llm.capture_failures == 0
    assert not (env / "d.db.spool.jsonl").exists() or (env / "d.db.spool.jsonl").stat().st_size == 0
    assert spool.pending(path) > 0
    monkeypatch.setattr(spool, "_write_all", real_write)
    sink.forget_stores()  # the connection with the page limit goes: space is back
    assert_all_kept(path, returned)


# -- the database deleted or replaced under the running app ---------------------------------------


def _unlink_database(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def test_the_database_deleted_mid_run_is_noticed_and_captures_go_to_the_new_file(env):
    path = env / "d.db"
    llm = llm_for(path)
    for n in range(20):
        llm.chat([{"role": "user", "content": f"before {n}"}])
    _unlink_database(path)
    after = [llm.chat([{"role": "user", "content": f"after {n}"}]).interaction_id for n in range(20)]
    assert path.exists()
    assert set(after) <= stored_ids(path)  # none went into the unlinked file
    assert_all_kept(path, after)


def test_the_database_replaced_mid_run_is_noticed(env):
    path = env / "d.db"
    llm = llm_for(path)
    before = [llm.chat([{"role": "user", "content": f"before {n}"}]).interaction_id for n in range(10)]
    sink.forget_stores()
    os.rename(path, env / "old.db")  # the user moves it aside and puts a fresh Wilson database there
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{env / 'old.db'}{suffix}")
    open_store(env / "fresh.db").close()
    llm2 = llm_for(path)
    llm2.chat([{"role": "user", "content": "opens the store"}])
    os.replace(env / "fresh.db", path)
    after = [llm2.chat([{"role": "user", "content": f"after {n}"}]).interaction_id for n in range(10)]
    assert set(before) <= stored_ids(env / "old.db")
    assert set(after) <= stored_ids(path)


def test_a_database_replaced_by_a_foreign_file_is_left_alone_and_captures_wait(env):
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat([{"role": "user", "content": "first"}])
    _unlink_database(path)
    foreign = sqlite3.connect(path)
    foreign.execute("CREATE TABLE notes (x)")
    foreign.commit()
    foreign.close()
    before = path.read_bytes()
    waiting = [llm.chat([{"role": "user", "content": f"n{n}"}]).interaction_id for n in range(5)]
    assert path.read_bytes() == before  # never written into
    assert spool.pending(path) == 5
    os.replace(path, env / "notes.db")  # the other app's file goes; ours comes back on the next open
    assert_all_kept(path, waiting)


# -- read-only database and spool locations, then the in-memory queue -----------------------------


@contextlib.contextmanager
def read_only_folder(folder):
    """A folder nobody can write: a read-only tmpfs remount as root, chmod otherwise."""
    if CAN_MOUNT:
        remount(folder, "ro")
        try:
            yield
        finally:
            remount(folder, "rw")
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


@pytest.fixture
def folders(env):
    """(database folder, fallback spool folder), each one a tmpfs when mounts are possible."""
    db_dir, spool_dir = env / "dbdir", env / "spooldir"
    with contextlib.ExitStack() as stack:
        if CAN_MOUNT:
            stack.enter_context(tmpfs(db_dir, "16m"))
            stack.enter_context(tmpfs(spool_dir, "16m"))
        elif os.name == "posix" and os.geteuid() == 0:
            pytest.skip("root without mount: permissions cannot make a folder read-only")
        else:
            db_dir.mkdir()
            spool_dir.mkdir()
        os.environ["WILSON_SPOOL_DIR"] = str(spool_dir)
        yield db_dir, spool_dir


def test_a_read_only_database_spools_to_the_second_location_and_replays(folders):
    db_dir, spool_dir = folders
    path = db_dir / "d.db"
    llm = llm_for(path)
    returned = [llm.chat([{"role": "user", "content": "writable"}]).interaction_id]
    sink.forget_stores()
    with read_only_folder(db_dir):
        llm = llm_for(path)
        returned += [llm.chat([{"role": "user", "content": f"ro {n}"}]).interaction_id for n in range(10)]
        assert llm.capture_failures == 0
        assert spool.pending(path) == 10 and list(spool_dir.glob("*.spool.jsonl"))
        # reading commands can read it meanwhile, and change nothing
        store = open_store(path, create=False)
        assert store.read_only and store.count() == 1
        store.close()
    assert_all_kept(path, returned)


def test_nothing_writable_holds_captures_in_memory_then_writes_them(folders):
    db_dir, spool_dir = folders
    path = db_dir / "d.db"
    llm = llm_for(path)
    returned = [llm.chat([{"role": "user", "content": "writable"}]).interaction_id]
    sink.forget_stores()
    with read_only_folder(db_dir), read_only_folder(spool_dir):
        returned += [llm.chat([{"role": "user", "content": f"held {n}"}]).interaction_id for n in range(10)]
        assert llm.capture_failures == 0
        assert sink.capture_state()["memory_queued"] == 10
    deadline = time.monotonic() + 10
    while sink.capture_state()["memory_queued"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the background retry writes them
    assert sink.capture_state()["memory_queued"] == 0
    assert_all_kept(path, returned)


def test_records_a_flush_is_writing_still_count_as_queued(folders, monkeypatch):
    """``memory_queued`` reads 0 only once every held record is in the database: a caller
    that waits for 0 (a test, a shutdown) then reads them all.  It read 0 while the retry
    thread was still writing, and 10 calls looked lost."""
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "30")  # no background retry: this test flushes
    db_dir, spool_dir = folders
    path = db_dir / "d.db"
    llm = llm_for(path)
    llm.chat([{"role": "user", "content": "writable"}])
    sink.forget_stores()
    with read_only_folder(db_dir), read_only_folder(spool_dir):
        returned = [llm.chat([{"role": "user", "content": f"held {n}"}]).interaction_id for n in range(3)]
    writing, release = threading.Event(), threading.Event()
    real_write = sink._write_to

    def slow_write(store, record):
        writing.set()
        release.wait(10)
        real_write(store, record)

    monkeypatch.setattr(sink, "_write_to", slow_write)
    flusher = threading.Thread(target=sink.memory_queue.flush)
    flusher.start()
    assert writing.wait(10)
    assert sink.capture_state()["memory_queued"] == 3  # taken by the flush, not yet written
    release.set()
    flusher.join(10)
    assert sink.capture_state()["memory_queued"] == 0
    assert set(returned) <= stored_ids(path)


def test_a_full_memory_queue_drops_the_oldest_counts_and_reports_them(folders, monkeypatch, caplog):
    monkeypatch.setenv("WILSON_MEMORY_QUEUE", "4")
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "30")  # no retry while the folders are read-only
    db_dir, spool_dir = folders
    path = db_dir / "d.db"
    llm = llm_for(path)
    llm.chat([{"role": "user", "content": "writable"}])
    sink.forget_stores()
    with read_only_folder(db_dir), read_only_folder(spool_dir):
        returned = [llm.chat([{"role": "user", "content": f"held {n}"}]).interaction_id for n in range(10)]
    assert sink.capture_state() == {"memory_queued": 4, "dropped": 6, "background_queued": 0}
    assert "dropped" in caplog.text
    assert sink.memory_queue.flush() == 0  # the retry: 4 written, the 6 drops counted in the database
    store = open_store(path)
    assert set(returned[-4:]) <= {i for i in stored_ids(path)}
    capture = collect_stats(store)["capture"]
    assert capture["dropped"] == 6
    from wilson_core.cli.capture import capture_health_line

    assert "6 LOST" in capture_health_line(capture)


# -- a lock held past the busy timeout -------------------------------------------------------------


def test_a_lock_held_past_the_busy_timeout_spools_and_replays(env):
    path = env / "d.db"
    llm = llm_for(path)
    returned = [llm.chat([{"role": "user", "content": "first"}]).interaction_id]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        returned += [llm.chat([{"role": "user", "content": f"locked {n}"}]).interaction_id for n in range(8)]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert spool.pending(path) > 0
    capture = assert_all_kept(path, returned)
    assert capture["spooled"] > 0


# -- SIGKILL, two processes of four threads, three rounds ---------------------------------------------

APP = textwrap.dedent(
    """
    import os, sys, threading
    import wilson_core
    db, log = sys.argv[1], sys.argv[2]
    llm = wilson_core.LLM("scripted:m", db=db, script=["ok"], cycle=True)
    def work(n):
        with open(f"{log}.{os.getpid()}.{n}", "a") as out:
            i = 0
            while True:
                reply = llm.chat([{"role": "user", "content": f"{os.getpid()} {n} {i}"}])
                out.write(reply.interaction_id + "\\n")
                out.flush()
                i += 1
    for n in range(4):
        threading.Thread(target=work, args=(n,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def test_processes_killed_mid_loop_lose_no_returned_call(env):
    path = env / "d.db"
    open_store(path).close()
    log = env / "returned"
    child_env = {**os.environ, "WILSON_BUSY_TIMEOUT_MS": "50", "WILSON_CAPTURE_RETRY_S": "0.05"}
    for round_number in range(3):
        holder = None
        if round_number == 1:  # a lock held part of the time: kills land while spooling too
            holder = sqlite3.connect(path, isolation_level=None, timeout=5)
        apps = [subprocess.Popen([sys.executable, "-c", APP, str(path), str(log)], env=child_env,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
        for app in apps:
            assert app.stdout.readline().strip() == "ready"
        time.sleep(0.4)
        if holder is not None:
            holder.execute("BEGIN EXCLUSIVE")
            time.sleep(0.3)
            holder.execute("ROLLBACK")
            holder.close()
        time.sleep(0.3)
        for app in apps:
            app.send_signal(signal.SIGKILL)
        for app in apps:
            app.wait(timeout=30)
            app.stdout.close()
    returned = []
    for part in env.glob("returned.*"):
        returned += [line for line in part.read_text().splitlines() if ID.match(line)]
    assert len(returned) > 100
    capture = assert_all_kept(path, returned, exact=False)  # calls cut before they returned may be stored too
    print(f"SIGKILL x3: {len(returned)} returned calls, all stored; capture counters {capture}")


def test_a_stale_replay_left_by_a_killed_process_is_replayed(env):
    path = env / "d.db"
    open_store(path).close()
    record = wilson_core.Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p",
                                     model="m", messages=[{"role": "user", "content": "waiting"}])
    spooled = spool.append(path, record)
    stale = spooled.with_name(spooled.name + ".replaying-999999")
    os.replace(spooled, stale)  # as a replay killed half way leaves it
    assert spool.leftovers(path)["stale"] == [stale]
    assert_all_kept(path, [record.id])
    assert not stale.exists()


def test_a_replay_in_progress_elsewhere_is_left_alone(env):
    path = env / "d.db"
    open_store(path).close()
    record = wilson_core.Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p",
                                     model="m", messages=[{"role": "user", "content": "waiting"}])
    spool.append(path, record)
    claims = spool.claim(path)  # "another process" holds it
    try:
        assert spool.claim(path) == [] and spool.leftovers(path)["stale"] == []
    finally:
        for claim in claims:
            claim.release()
    assert len(spool.claim(path)) == 1  # released without being replayed: taken again


def test_a_record_the_database_refuses_is_quarantined_and_the_rest_replays(env, monkeypatch):
    path = env / "d.db"
    open_store(path).close()
    good = [wilson_core.Interaction(run_id="r", sequence_num=n, call_type="agent", provider="p", model="m",
                                    messages=[{"role": "user", "content": f"good {n}"}]) for n in range(3)]
    bad = wilson_core.Interaction(run_id="r", sequence_num=9, call_type="agent", provider="p", model="m",
                                  messages=[{"role": "user", "content": "refused"}])
    for record in [good[0], bad, *good[1:]]:
        spool.append(path, record)
    from wilson_core.store import writing

    real_row = writing.WritePath.interaction_row

    def refuse_one(self, interaction):
        row, blobs = real_row(self, interaction)
        if interaction.id == bad.id:
            row = (*row[:2], 2**70, *row[3:])  # sqlite3 cannot bind it: OverflowError, every time
        return row, blobs

    monkeypatch.setattr(writing.WritePath, "interaction_row", refuse_one)
    sink.forget_stores()
    store = open_store(path)
    assert {g.id for g in good} <= stored_ids(path)
    assert spool.pending(path) == 0 and not spool.leftovers(path)["stale"]
    [(kept, count)] = spool.quarantined(path)
    assert count == 1 and bad.id in kept.read_text()
    capture = collect_stats(store)["capture"]
    assert capture["quarantined"] == 1 and capture["replayed"] == 3
    # capture goes on directly afterwards: nothing waits behind the bad record
    reply = llm_for(path).chat([{"role": "user", "content": "after"}])
    assert reply.interaction_id in stored_ids(path)


def test_capture_threads_and_a_deleting_thread_lose_nothing_after_the_deletion(env):
    """Threads capture while another deletes the file: the calls after it are in the new file."""
    path = env / "d.db"
    llm = llm_for(path)
    llm.chat([{"role": "user", "content": "first"}])
    deleted = threading.Event()
    after: list[str] = []
    made = []
    lock = threading.Lock()

    def work(n):
        mine_after = 0
        for i in range(2000):  # until this thread has made 10 calls after the deletion
            seen = deleted.is_set()
            reply = llm.chat([{"role": "user", "content": f"{n} {i}"}])
            with lock:
                made.append(reply.interaction_id)
                if seen:
                    after.append(reply.interaction_id)
            mine_after += seen
            if mine_after >= 10:
                return

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(made) < 20 and time.monotonic() < deadline:  # the threads are capturing
        time.sleep(0.001)
    _unlink_database(path)
    deleted.set()
    for thread in threads:
        thread.join()
    assert after
    assert_all_kept(path, after, exact=False)


# -- portability and wilson doctor ------------------------------------------------------------------


def test_import_and_capture_work_without_posix_only_modules(env):
    """As on Windows: no fcntl (and here no msvcrt either): importing and capturing still work."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["fcntl"] = None  # an import of it raises ImportError
        import wilson_core
        from wilson_core.cli import main
        reply = wilson_core.LLM("scripted:m", db={str(env / 'p.db')!r}, script=["ok"]).chat(
            [{{"role": "user", "content": "hi"}}])
        print(reply.text)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert len(stored_ids(env / "p.db")) == 1


def test_doctor_says_ok_for_a_sound_database_and_exits_3_on_problems(env):
    path = env / "d.db"
    llm_for(path).chat([{"role": "user", "content": "hi"}])
    sink.forget_stores()

    def doctor(*extra):
        done = subprocess.run([sys.executable, "-m", "wilson_core.cli", "--db", str(path), "doctor", *extra],
                              capture_output=True, text=True)
        assert "Traceback" not in done.stderr
        return done

    assert doctor().returncode == 0
    record = wilson_core.Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p", model="m",
                                     messages=[{"role": "user", "content": "x"}])
    spool.quarantine(spool.spool_paths(path)[0], record, "test")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO tool_results (id, interaction_id, tool_call_id, tool_name, content, created_at) "
                 "VALUES ('t', 'missing', 'c', 'f', 'x', 'now')")
    conn.commit()
    conn.close()
    done = doctor("--json")
    assert done.returncode == 3
    problems = " ".join(__import__("json").loads(done.stdout)["problems"])
    assert "quarantine" in problems and "tool results of a missing interaction" in problems
    other = env / "other.db"
    foreign = sqlite3.connect(other)
    foreign.execute("CREATE TABLE t (x)")
    foreign.commit()
    foreign.close()
    done = subprocess.run([sys.executable, "-m", "wilson_core.cli", "--db", str(other), "doctor"],
                          capture_output=True, text=True)
    assert done.returncode == 3 and "not a usable Wilson database" in done.stdout
