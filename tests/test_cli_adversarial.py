"""Every command over databases that are not Wilson's, empty, corrupt, missing or read-only, and export
onto special paths: a clear error, a non-zero exit, no traceback, and the file byte-identical.

Reading commands read a read-only database; only commands that write create a database, and
only where nothing is.  (Before: ``wilson --db other-app.db runs`` wrote ~30 tables into another
application's file, an empty file became a Wilson database, a read-only one could not be read and
``--db postgresql://...`` made folders named ``postgresql:``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

import wilson_core
from wilson_core.cli import main
from wilson_core.store import open_store, sink

CAN_MOUNT = os.name == "posix" and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small Wilson database and the ids in it."""
    folder = tmp_path_factory.mktemp("source")
    os.environ.setdefault("WILSON_SPOOL_DIR", str(folder / "spool"))
    path = folder / "w.db"
    llm = wilson_core.LLM("scripted:m", db=str(path), script=["one", "two"], cycle=True)
    with llm.run() as run:
        first = run.chat([{"role": "user", "content": "a"}]).interaction_id
        second = run.chat([{"role": "user", "content": "a"}]).interaction_id
    sink.forget_stores()
    store = open_store(path)
    store.close()
    sink.forget_stores()
    return path, first, second


def commands(first: str, second: str, side, db=None) -> dict[str, list[str]]:
    """Every command that opens the database, with arguments that are fine for a good one."""
    labels = side / "labels.jsonl"
    labels.write_text(json.dumps({"id": first, "rating": 4}) + "\n")
    jsonl = side / "chat.jsonl"
    jsonl.write_text(json.dumps({"messages": [{"role": "user", "content": "x"},
                                              {"role": "assistant", "content": "y"}]}) + "\n")
    return {
        "logs": ["logs"],
        "runs": ["runs"],
        "show": ["show", first],
        "stats": ["stats"],
        "doctor": ["doctor"],
        "export": ["export", "sft", "--out", str(side / "out.jsonl"), "--min-rating", "1"],
        "export-count": ["export", "sft", "--count"],
        "history": ["annotate", "history", first],
        "proposals": ["annotate", "proposals"],
        "models": ["models"],
        "rate": ["annotate", "rate", first, "5"],
        "note": ["annotate", "note", first, "text"],
        "tag": ["annotate", "tag", first, "t"],
        "correct": ["annotate", "correct", first, "--response", "better"],
        "pair": ["annotate", "pair", first, second],
        "undo": ["annotate", "undo", first],
        "accept": ["annotate", "accept", first],
        "reject": ["annotate", "reject", first],
        "harvest": ["annotate", "harvest-pairs"],
        "label-import": ["annotate", "import", str(labels)],
        "import-jsonl": ["import", "openai-jsonl", str(jsonl)],
        "db-copy": ["db", "copy", str(db), str(side / "copy.db")],
    }


READING = {"logs", "runs", "show", "stats", "doctor", "export", "export-count", "history", "proposals",
           "models"}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    sink.forget_stores()
    try:
        code = main(argv)
    except SystemExit as exc:  # click may exit on usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    sink.forget_stores()
    return code, out, err


def snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def make_bad(kind: str, folder, source_path) -> os.PathLike:
    path = folder / "bad.db"
    if kind == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('mine')")
        conn.commit()
        conn.close()
    elif kind == "foreign-migrations":  # another app using sqlite-utils migrations
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE _sqlite_migrations (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT)")
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name) VALUES ('other', 'm1')")
        conn.execute("CREATE TABLE things (x)")
        conn.commit()
        conn.close()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a database\n" * 50)
    elif kind == "corrupt":  # a Wilson database with its pages overwritten after the header
        data = bytearray(source_path.read_bytes())
        data[100:] = os.urandom(len(data) - 100)
        path.write_bytes(bytes(data))
    elif kind == "truncated":
        path.write_bytes(source_path.read_bytes()[:1500])
    else:
        raise AssertionError(kind)
    return path


BAD_KINDS = ["foreign", "foreign-migrations", "empty", "text", "corrupt", "truncated"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_command_refuses_a_bad_database_and_leaves_it_as_it_was(kind, source, tmp_path, capsys):
    source_path, first, second = source
    folder = tmp_path / "db"
    folder.mkdir()
    side = tmp_path / "side"
    side.mkdir()
    path = make_bad(kind, folder, source_path)
    before = snapshot(folder)
    tried = 0
    for name, argv in commands(first, second, side, path).items():
        code, out, err = run_cli(["--db", str(path), *argv], capsys)
        tried += 1
        assert code != 0, f"{name} on a {kind} file exited 0: {out[:200]}"
        assert "Traceback" not in err + out, f"{name} on a {kind} file: {err[-500:]}"
        assert "Error" in err, f"{name} on a {kind} file said nothing clear: {err[:200]!r}"
        assert "Usage:" not in err, f"{name}: the test's arguments are wrong: {err[:300]}"
        assert snapshot(folder) == before, f"{name} changed the {kind} file or wrote beside it"
    assert tried == len(commands(first, second, side, path))


def test_reading_commands_never_create_a_database(source, tmp_path, capsys):
    _, first, second = source
    side = tmp_path / "side"
    side.mkdir()
    for name, argv in commands(first, second, side, tmp_path / "nested" / "missing.db").items():
        if name == "import-jsonl":
            continue  # imports create the database they write into
        missing = tmp_path / "nested" / "missing.db"
        code, _, err = run_cli(["--db", str(missing), *argv], capsys)
        assert code != 0 and "Traceback" not in err, name
        assert not (tmp_path / "nested").exists(), f"{name} created a folder or database"


def test_a_database_url_never_becomes_folders(tmp_path, monkeypatch, capsys, source):
    _, first, second = source
    monkeypatch.chdir(tmp_path)
    for argv in (["runs"], ["stats"], ["show", first]):
        code, _, err = run_cli(["--db", "postgresql://nobody@127.0.0.1:1/none", *argv], capsys)
        assert code != 0 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "folders were made from the URL"


@contextlib.contextmanager
def read_only(folder):
    if CAN_MOUNT:
        folder.mkdir(exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("mount refused: cannot make a read-only folder as root")
        try:
            yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)
    elif os.name == "posix" and os.geteuid() == 0:
        pytest.skip("root without mount: permissions cannot make a file read-only")
    else:
        folder.mkdir(exist_ok=True)

        def lock() -> None:
            for path in folder.iterdir():
                path.chmod(0o444)
            folder.chmod(0o555)

        try:
            yield lock
        finally:
            folder.chmod(0o755)


def test_a_read_only_database_is_read_and_never_written(source, tmp_path, capsys):
    source_path, first, second = source
    folder = tmp_path / "ro"
    side = tmp_path / "side"
    side.mkdir()
    with read_only(folder) as lock:
        shutil.copy(source_path, folder / "w.db")
        lock()
        before = snapshot(folder)
        for name, argv in commands(first, second, side, folder / "w.db").items():
            code, out, err = run_cli(["--db", str(folder / "w.db"), *argv], capsys)
            assert "Traceback" not in err + out, f"{name}: {err[-500:]}"
            if name in READING - {"models"}:  # models sets up its registry tables on first use
                assert code in (0, 3), f"{name} could not read a read-only database: {err[:300]}"
            elif name not in ("db-copy", "models", "harvest"):  # harvest: nothing to write here
                assert code != 0 and "Error" in err, f"{name} wrote into a read-only database?"
            assert snapshot(folder) == before, name
        code, out, _ = run_cli(["--db", str(folder / "w.db"), "show", first, "--json"], capsys)
        assert code == 0 and json.loads(out)["id"] == first


# -- export onto special paths ---------------------------------------------------------------


@pytest.fixture
def good_db(source, tmp_path):
    path = tmp_path / "w.db"
    shutil.copy(source[0], path)
    return path


def test_export_to_dash_writes_standard_output(good_db, capsys, tmp_path, monkeypatch):
    wilson_core.annotations.annotate(open_store(good_db), _first_id(good_db), rating=5)
    sink.forget_stores()
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    code, out, err = run_cli(["--db", str(good_db), "export", "sft", "--out", "-"], capsys)
    assert code == 0, err
    assert set(tmp_path.iterdir()) == before  # no file named "-", no manifest
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(line["messages"] for line in lines)
    assert "standard output" in err


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and device files")
@pytest.mark.parametrize("special", ["fifo", "device", "stdout-link", "folder"])
def test_export_refuses_special_files_and_leaves_them(good_db, tmp_path, capsys, special):
    # Made in tmp_path, never the system's own /dev/null or /dev/stdout: a regression of the
    # code under test must not be able to replace them on the machine running the tests.
    target = tmp_path / special
    if special == "fifo":
        os.mkfifo(target)
    elif special == "folder":
        target.mkdir()
    elif special == "device":
        import stat

        try:  # a character device like /dev/null (root only)
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    else:  # like /dev/stdout: a link to this process's standard output
        target.symlink_to("/proc/self/fd/1")
    kind = os.lstat(target).st_mode
    if special == "stdout-link":  # a pipe behind the link, as when a shell pipes the command
        done = subprocess.run([sys.executable, "-m", "wilson_core.cli", "--db", str(good_db), "export", "sft",
                               "--out", str(target)], capture_output=True, text=True)
        code, err = done.returncode, done.stderr
    else:
        code, out, err = run_cli(["--db", str(good_db), "export", "sft", "--out", str(target)], capsys)
    assert code != 0 and "Traceback" not in err and "Error" in err
    assert os.lstat(target).st_mode == kind  # not replaced by a regular file


def test_export_writes_through_a_symbolic_link(good_db, tmp_path, capsys):
    wilson_core.annotations.annotate(open_store(good_db), _first_id(good_db), rating=5)
    sink.forget_stores()
    real = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    code, _, err = run_cli(["--db", str(good_db), "export", "sft", "--out", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().strip()


def _first_id(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id FROM interactions ORDER BY created_at LIMIT 1").fetchone()[0]
    finally:
        conn.close()


# -- import ---------------------------------------------------------------------------------


def test_import_is_idempotent_across_copies_and_refuses_our_own_and_foreign_files(tmp_path, capsys):
    sys.path.insert(0, os.path.dirname(__file__))
    from wilson_fixtures import build_wilson_db

    source = build_wilson_db(tmp_path / "data.db")
    copy = tmp_path / "copy-of-data.db"
    shutil.copy(source, copy)
    ours = tmp_path / "ours.db"
    code, out, _ = run_cli(["--db", str(ours), "import", "wilson-db", str(source), "--json"], capsys)
    assert code == 0 and json.loads(out)["added"]["interactions"] == 5
    code, out, _ = run_cli(["--db", str(ours), "import", "wilson-db", str(copy), "--json"], capsys)
    assert code == 0 and json.loads(out)["added"]["interactions"] == 0
    before = ours.read_bytes()
    code, _, err = run_cli(["--db", str(ours), "import", "wilson-db", str(ours)], capsys)
    assert code != 0 and "wilson-core" in err and "Traceback" not in err
    foreign = make_bad("foreign", tmp_path, source)
    code, _, err = run_cli(["--db", str(ours), "import", "wilson-db", str(foreign)], capsys)
    assert code != 0 and "not an Open Accountant Wilson database" in err
    sink.forget_stores()
    assert open_store(ours).count() == 5
    assert len(before) > 0
