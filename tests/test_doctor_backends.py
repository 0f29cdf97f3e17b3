"""``wilson doctor`` on both backends, and what it checks on a real PostgreSQL server only:
the server can be reached, the schema's version, the role's privileges, the captures spooled
while the server was away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from wilson_core import LLM, open_store
from wilson_core.records import Interaction, Run, ToolResult
from wilson_core.store import sink
from wilson_core.store.writing import Batch


def doctor(location: str, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict | str]:
    done = subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", "--db", location, "doctor", *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if "--json" in extra else done.stdout


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    folder = tmp_path / "spool"
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(folder))
    monkeypatch.delenv("WILSON_DB", raising=False)
    sink.forget_stores()
    yield folder
    sink.forget_stores()


def _fill(location: str) -> None:
    run = Run(call_type="agent")
    calls = [Interaction(run_id=run.id, sequence_num=n, call_type="agent", provider="p", model="m",
                         messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{n}"}],
                         response_content=f"a{n}") for n in (1, 2, 3)]
    store = open_store(location)
    store.write_batch(Batch(runs=[run], interactions=calls, tool_results=[
        ToolResult(interaction_id=calls[0].id, tool_call_id="c1", name="lookup", content="42")]))
    store.close()


def test_doctor_counts_and_checks_a_sound_store_on_both_backends(store_location, spool_dir):
    _fill(store_location)
    code, report = doctor(store_location, "--json", env={"WILSON_SPOOL_DIR": str(spool_dir)})
    assert code == 0, report["problems"]
    checks = report["checks"]
    assert report["backend"] == ("postgresql" if store_location.startswith("postgresql") else "sqlite")
    assert checks["schema"]["pending"] == [] and checks["schema"]["unknown"] == []
    assert checks["rows"] == {"runs": 1, "interactions": 3, "tool_results": 1, "annotations": 0, "pairs": 0,
                              "blobs": 1, "capture_counters": 0}
    assert set(checks["orphans"].values()) == {0}
    assert checks["spool"]["waiting"] == 0
    code, text = doctor(store_location, env={"WILSON_SPOOL_DIR": str(spool_dir)})
    assert code == 0 and "rows: runs 1, interactions 3" in text and "no problems found" in text


def test_doctor_on_postgresql_reports_the_server_and_the_privileges(pg_url, spool_dir):
    _fill(pg_url)
    code, report = doctor(pg_url, "--json")
    assert code == 0
    server = report["checks"]["server"]
    assert server["user"] == "postgres" and server["database"] == pg_url.rsplit("/", 1)[1]
    assert int(server["version"].split(".")[0]) >= 12
    assert report["checks"]["privileges"]["interactions"] == ["SELECT", "INSERT", "UPDATE"]
    code, text = doctor(pg_url)
    assert code == 0 and f"server: PostgreSQL {server['version']}, role postgres" in text


def test_doctor_finds_an_empty_database_an_old_schema_and_orphans_on_postgresql(postgres_server, spool_dir):
    from wilson_core.store import pg_schema
    from wilson_core.store.postgres import Connection

    empty = postgres_server.new_database()
    code, report = doctor(empty, "--json")
    assert code == 3 and "no Wilson database" in report["problems"][0]
    conn = Connection(empty)
    assert conn.execute("SELECT to_regclass('interactions')").fetchone()[0] is None

    old = postgres_server.new_database()
    conn = Connection(old)
    pg_schema.migrate(conn, upto="m006_create_search_index")
    code, report = doctor(old, "--json")
    assert code == 3
    assert report["checks"]["schema"]["pending"] == pg_schema.names()[6:]
    assert any("schema is behind" in p for p in report["problems"])
    assert pg_schema.applied(conn) == pg_schema.names()[:6]  # doctor migrated nothing

    orphaned = postgres_server.new_database()
    _fill(orphaned)
    Connection(orphaned).execute(
        "INSERT INTO tool_results (id, interaction_id, tool_call_id, tool_name, content, created_at) "
        "VALUES ('t', 'missing', 'c', 'f', 'x', 'now')")
    code, report = doctor(orphaned, "--json")
    assert code == 3 and report["problems"] == ["1 tool results of a missing interaction"]


#: the grants docs/capture.md gives an app server's role (as test_store_backends checks).
CAPTURE_ROLE_GRANTS = """
CREATE ROLE {role} LOGIN;
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON wilson_migrations TO {role};
GRANT INSERT ON interactions, blobs, tool_results TO {role};
GRANT SELECT, INSERT, UPDATE ON runs, capture_counters TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_says_a_server_cannot_be_reached_and_counts_the_captures_spooled_for_it(spool_dir):
    url = f"postgresql://wilson:secret@127.0.0.1:{_closed_port()}/wilson"
    llm = LLM("scripted:m", db=url, script=["ok"], cycle=True)
    for n in range(3):
        assert llm.chat([{"role": "user", "content": f"while down {n}"}]).text == "ok"
    sink.forget_stores()
    code, report = doctor(url, "--json", env={"WILSON_PG_CONNECT_TIMEOUT": "1"})
    assert code == 3
    assert report["database"] == url.replace(":secret@", ":***@")  # never the password
    assert report["checks"]["connected"] is False
    assert report["checks"]["spool"]["waiting"] == 3
    assert "cannot connect" in report["problems"][0] and "secret" not in json.dumps(report)
    code, text = doctor(url, env={"WILSON_PG_CONNECT_TIMEOUT": "1"})
    assert code == 3 and "server: cannot connect" in text and "3 capture(s) wait in the spool" in text


def test_doctor_with_a_capture_only_role_reports_what_it_may_do_and_reads_nothing(pg_url, spool_dir):
    import psycopg

    _fill(pg_url)
    role = f"doctor_capture_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(CAPTURE_ROLE_GRANTS.format(role=role))
    app_url = pg_url.replace("postgres@", f"{role}@")
    code, report = doctor(app_url, "--json")
    assert code == 0, report["problems"]  # a capture-only role is a setup, not a problem
    checks = report["checks"]
    assert checks["privileges"]["interactions"] == ["INSERT"]
    assert checks["privileges"]["runs"] == ["SELECT", "INSERT", "UPDATE"]
    assert checks["schema"]["pending"] == []
    assert "cannot read" in checks["reading"] and "rows" not in checks
