"""The text boundary from the other doors: import files and the command line.

Arbitrary Unicode (lone surrogates as JSON escapes or as invalid UTF-8 bytes, NUL, RTL marks)
through ``wilson import openai-jsonl``, ``wilson import wilson-db`` and ``wilson annotate``:
each is stored (once), the database passes ``integrity_check`` and every view still answers.
Before, a ``\\ud800`` escape in an imported line or the same byte in ``--note`` was a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wilson_core.cli import main
from wilson_core.store import open_store, sink
from wilson_core.text import clean_text

SPECIAL = ["\ud800", "\udfff", "\udc80", "\x00", "\u202e", "\u200f", "\ufeff", "\U0010ffff"]
TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL)),
               min_size=1, max_size=30)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("WILSON_DB", raising=False)
    yield tmp_path
    sink.forget_stores()


def cli(argv, capsys) -> tuple[int, str, str]:
    sink.forget_stores()
    code = main(argv)
    out, err = capsys.readouterr()
    sink.forget_stores()
    assert "Traceback" not in out + err
    return code, out, err


def views_answer(db, capsys) -> None:
    for argv in (["runs"], ["stats"], ["logs"], ["doctor"], ["export", "sft", "--count"]):
        code, _, err = cli(["--db", str(db), *argv], capsys)
        assert code == 0, (argv, err)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT id FROM interactions")]
    finally:
        conn.close()
    for interaction_id in ids[:3]:
        code, out, _ = cli(["--db", str(db), "show", interaction_id, "--json"], capsys)
        assert code == 0 and json.loads(out)["id"] == interaction_id


@given(lines=st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=4), raw=st.booleans())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_in_an_openai_jsonl_file_is_imported_once(env, capsys, lines, raw):
    db = env / f"jsonl-{os.urandom(4).hex()}.db"
    source = env / "chat.jsonl"
    with open(source, "wb") as out:
        for system, user, answer in lines:
            line = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                 {"role": "assistant", "content": answer}],
                    "metadata": {user: answer}}
            if raw:  # the text as bytes, lone surrogates as the invalid UTF-8 they would be on disk
                out.write(json.dumps(line, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
            else:  # lone surrogates as \\ud800 escapes
                out.write(json.dumps(line).encode("ascii") + b"\n")
    code, out, err = cli(["--db", str(db), "import", "openai-jsonl", str(source), "--json"], capsys)
    if code != 0:  # refused as a whole: a clear message, nothing written
        assert "Error" in err and not db.exists()
        return
    added = json.loads(out)["added"]["interactions"]
    again = json.loads(cli(["--db", str(db), "import", "openai-jsonl", str(source), "--json"], capsys)[1])
    assert again["added"]["interactions"] == 0 and added >= 1
    views_answer(db, capsys)


@given(note=TEXT, tag=TEXT)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_on_the_command_line_is_a_label(env, capsys, note, tag):
    db = env / "labels.db"
    if not db.exists():
        import wilson_core

        wilson_core.LLM("scripted:m", db=str(db), script=["a"], cycle=True).chat([{"role": "user", "content": "q"}])
        sink.forget_stores()
    interaction_id = sqlite3.connect(db).execute("SELECT id FROM interactions").fetchone()[0]
    code, _, err = cli(["--db", str(db), "annotate", "rate", interaction_id, "4", "--note", note, "--tag", tag],
                       capsys)
    assert code == 0 or ("Error" in err and code != 0), err
    code, _, err = cli(["--db", str(db), "annotate", "note", "--", interaction_id, note], capsys)
    assert code == 0, err
    store = open_store(db)
    from wilson_core import annotations

    assert annotations.current(store, interaction_id).notes == clean_text(note)
    store.close()
    views_answer(db, capsys)


def test_invalid_utf8_bytes_on_the_real_command_line(env):
    """The bytes a terminal may pass: Python turns them into lone surrogates (surrogateescape)."""
    import wilson_core

    db = env / "argv.db"
    reply = wilson_core.LLM("scripted:m", db=str(db), script=["a"], cycle=True).chat([{"role": "user", "content": "q"}])
    sink.forget_stores()
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"wilson_core.cli", b"--db", os.fsencode(db), b"annotate", b"note",
         reply.interaction_id.encode(), b"bad \xff\xfe bytes"],
        capture_output=True, env={**os.environ, "WILSON_SPOOL_DIR": str(env / "spool")},
    )
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    from wilson_core import annotations

    assert annotations.current(open_store(db), reply.interaction_id).notes == "bad \ufffd\ufffd bytes"


def test_invalid_text_inside_an_open_accountant_database_is_imported(env, capsys):
    sys.path.insert(0, os.path.dirname(__file__))
    from wilson_fixtures import build_wilson_db

    source = build_wilson_db(env / "data.db")
    conn = sqlite3.connect(source)
    conn.text_factory = bytes
    # invalid UTF-8 and NUL stored as TEXT, as another program may have written them
    conn.execute("UPDATE llm_interactions SET user_prompt = CAST(? AS TEXT), response_content = ?",
                 (b"caf\xc3\xa9 \xed\xa0\x80 \xff", "nul \x00 rtl \u202e"))
    conn.commit()
    conn.close()
    db = env / "ours.db"
    code, out, err = cli(["--db", str(db), "import", "wilson-db", str(source), "--json"], capsys)
    assert code == 0, err
    views_answer(db, capsys)
    texts = [r[0] for r in sqlite3.connect(db).execute("SELECT response_content FROM interactions")]
    assert "nul \ufffd rtl \u202e" in texts
