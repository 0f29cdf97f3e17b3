"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest

# A real PostgreSQL server for the store's tests on both backends (tests/postgres_server.py).
from postgres_server import pg_url, postgres_server, store_location  # noqa: F401


@pytest.fixture()
def sample(store_location):  # noqa: F811 - the fixture imported above
    """The hand-written sample store of the export tests (``wilson_exporters.samples``),
    once in an SQLite file and once in a PostgreSQL database."""
    samples = pytest.importorskip("wilson_exporters.samples")
    store, ids = samples.build_sample_store(store_location)
    yield store, ids
    store.close()


@pytest.fixture()
def upstream():
    """A real local HTTP server that answers as OpenAI, Anthropic and Ollama do
    (:class:`wilson_core.testing.upstreams.FakeUpstream`); push replies onto it."""
    from wilson_core.testing.upstreams import FakeUpstream

    with FakeUpstream() as server:
        yield server


@pytest.fixture()
def captured_db(tmp_path, monkeypatch):
    """A database path for captured calls, with its own spool folder and no ``$WILSON_DB``;
    the capture sink's open stores are let go afterwards."""
    from wilson_core.store import sink

    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("WILSON_DB", raising=False)
    yield tmp_path / "data.db"
    sink.forget_stores()
