"""Fixtures: H4's real local upstream (every protocol) and the proxy in front of it, recording into a temp DB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from proxy_support import start_proxy
from wilson_proxy.app import RunningProxy

from wilson_core.store import open_store
from wilson_core.testing.upstreams import FakeUpstream


class Proxied:
    """The proxy under test, its upstream and its database."""

    def __init__(self, proxy: RunningProxy, upstream: FakeUpstream, db: Path) -> None:
        self.proxy, self.upstream, self.db = proxy, upstream, db
        self.since = 0

    def mark(self) -> Proxied:
        """Count only what is recorded from now on (one proxy serves a whole test module)."""
        self.proxy.wait_recorded()
        self.since = self.proxy.recorder.stats()["recorded"]
        self.upstream.requests.clear()
        return self

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def openai_url(self) -> str:
        return self.proxy.url + "/v1"

    def stored(self, expected: int, timeout: float = 60.0) -> list:
        """The interactions recorded so far, oldest first, once ``expected`` of them are there."""
        deadline = time.monotonic() + timeout
        while self.proxy.recorder.stats()["recorded"] - self.since < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = self.proxy.wait_recorded(timeout)
        assert stats["capture_errors"] == 0 and stats["lost"] == 0, stats
        store = open_store(self.db)
        try:
            found = sorted(store.iter_interactions(), key=lambda i: i.created_at)[self.since:]
            assert len(found) == expected, [(i.status, i.error) for i in found]
            return found
        finally:
            store.close()

    def store(self):
        return open_store(self.db)


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def served(upstream, tmp_path_factory):
    db = tmp_path_factory.mktemp("proxy") / "wilson.db"
    proxy = start_proxy(upstream, db)
    try:
        yield Proxied(proxy, upstream, db)
    finally:
        proxy.stop()


@pytest.fixture
def proxied(served):
    """The module's proxy; ``stored`` counts what this test recorded."""
    return served.mark()
