"""Fixtures: a real SQLite database filled through the facade, and the dashboard served by uvicorn."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from dashboard_testdata import BACKENDS, free_port, seed

from wilson_core import open_store

if "postgresql" in BACKENDS:
    from postgres_server import pg_url, postgres_server  # noqa: F401


class Served:
    def __init__(self, db: Path, ids: dict[str, str], token: str, port: int) -> None:
        self.db, self.ids, self.token, self.port = db, ids, token, port
        self.base = f"http://127.0.0.1:{port}"
        self.store = open_store(db)

    @property
    def login_url(self) -> str:
        return f"{self.base}/?token={self.token}"


@pytest.fixture
def seeded_db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    db = tmp_path / "wilson.db"
    return db, seed(db)


@pytest.fixture
def served(seeded_db) -> Served:
    import uvicorn
    from wilson_dashboard.app import Settings, create_app

    db, ids = seeded_db
    token = "test-token-" + str(time.time_ns())
    port = free_port()
    app = create_app(Settings(db=str(db), token=token, regenerate_provider=None))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    try:
        yield Served(db, ids, token, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
