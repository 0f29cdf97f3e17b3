"""Redaction is one setting for both export paths (and run pages take short ids): ``[tool.wilson.export] redact`` (in
./pyproject.toml or beside the database) is honoured by ``wilson export`` and by the
dashboard's download buttons, and the dashboard shows whether it is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dashboard_testdata import seed

import wilson_core
from wilson_core import annotations
from wilson_core.store import open_store

EMAIL = "jane.doe@example.com"


def add_answer_with_an_email(db: Path) -> None:
    llm = wilson_core.LLM("scripted:m", db=str(db), script=[f"I emailed the receipt to {EMAIL}."])
    reply = llm.chat([{"role": "user", "content": "Where did the receipt go?"}], call_type="agent")
    annotations.rate(open_store(db), reply.interaction_id, 5)


@pytest.fixture
def seeded_db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.wilson.export]\nredact = true\n")
    db = project / "wilson.db"
    ids = seed(db)
    add_answer_with_an_email(db)
    return db, ids


def test_the_dashboard_shows_the_setting_and_its_downloads_are_redacted(served):
    client = httpx.Client(base_url=served.base, follow_redirects=False, timeout=30)
    assert client.get(f"/?token={served.token}").status_code == 303
    page = client.get("/").text
    assert "Export redaction: <strong>on</strong>" in page and "pyproject.toml" in page
    body = client.get("/api/export/sft").text
    assert body and EMAIL not in body and "<EMAIL_" in body


def wilson_export(db: Path, cwd: Path, *flags: str) -> str:
    out = cwd / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "WILSON_DB"}
    done = subprocess.run([sys.executable, "-m", "wilson_core", "export", "sft", "--db", str(db), "--out", str(out),
                           "--min-rating", "4", "--quiet", *flags], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out.read_text()


def test_wilson_export_reads_the_same_setting_beside_the_database(seeded_db, tmp_path):
    db, _ = seeded_db
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert EMAIL not in wilson_export(db, elsewhere)  # the project's setting travels with the database
    assert EMAIL in wilson_export(db, elsewhere, "--no-redact")  # a flag wins
    (elsewhere / "pyproject.toml").write_text("[tool.wilson.export]\nredact = false\n")
    assert EMAIL in wilson_export(db, elsewhere)  # ./pyproject.toml comes first
    manifest = json.loads((elsewhere / "out.jsonl.manifest.json").read_text())
    assert manifest["redaction"]["enabled"] is False


def test_a_run_page_takes_a_short_id_as_the_command_line_does(tmp_path):
    """/runs/SHORT_ID shows the run (the same resolver as every command)."""
    from wilson_dashboard.app import run_view

    from wilson_core.store.listing import short_ids

    db = tmp_path / "w.db"
    ids = seed(db)
    store = open_store(db)
    short = short_ids(store, [ids["run"]])[ids["run"]]
    assert len(short) < len(ids["run"])
    view = run_view(store, short)
    assert view["run"].id == ids["run"] and len(view["steps"]) == 2
