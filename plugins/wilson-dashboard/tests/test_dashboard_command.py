"""`wilson dashboard` as a user starts it: the printed token URL, loopback binding, 401 without it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
from wilson_dashboard.plugin import DEFAULT_PORT
from wilson_dashboard.server import is_loopback


def test_the_command_prints_a_token_url_and_serves_only_with_it(seeded_db):
    db, _ = seeded_db
    env = {**os.environ, "WILSON_DB": str(db)}
    env.pop("WILSON_DASHBOARD_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())", "dashboard", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            match = re.match(r"Open: (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))$", line.strip())
            if match:
                url, port, token = match.group(1), match.group(2), match.group(3)
        assert url is not None, process.stderr.read() if process.poll() is not None else "no URL printed"
        assert len(token) >= 24
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base + "/api/stats", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(base + "/api/interactions").status_code == 401
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            assert client.get(url).status_code == 200  # redirected to / with the session cookie
            from wilson_core import open_store

            assert len(client.get("/api/interactions").json()["items"]) == open_store(db).count() == 11
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_defaults_are_loopback_and_port_3141():
    from wilson_dashboard.plugin import dashboard_command

    options = {p.name: p.default for p in dashboard_command.params}
    assert (options["host"], options["port"], DEFAULT_PORT) == ("127.0.0.1", 3141, 3141)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_the_plugin_declares_the_dashboard_annotation_source_and_command():
    from wilson_core import plugins

    sources = [s for group in plugins.hook().wilson_annotation_sources() for s in group]
    assert {"name": "dashboard", "kind": "human"}.items() <= next(s for s in sources if s["name"] == "dashboard").items()
    import click

    group = click.Group()
    plugins.hook().wilson_register_commands(cli=group)
    assert "dashboard" in group.commands


def test_a_missing_database_is_a_clear_error_not_a_new_empty_one(tmp_path, capsys):
    from wilson_core.cli import main

    missing = tmp_path / "none.db"
    assert main(["--db", str(missing), "dashboard", "--port", "0"]) == 1
    assert f"Error: no Wilson database at {missing}" in capsys.readouterr().err
    assert not missing.exists()
