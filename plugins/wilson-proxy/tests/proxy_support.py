"""Helpers the proxy's tests import by name.

(Not in conftest.py: every plugin's tests folder has one, and which module is called
``conftest`` depends on the order pytest loads them, so tests must not import from it.)
"""

from __future__ import annotations

from pathlib import Path

from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.upstreams import parse_upstream_options

from wilson_core.testing.upstreams import FakeUpstream


def start_proxy(upstream: FakeUpstream, db: Path, **settings) -> RunningProxy:
    upstreams = parse_upstream_options(
        [f"openai={upstream.openai_url}", f"anthropic={upstream.url}", f"ollama={upstream.url}"]
    )
    return RunningProxy(ProxySettings(upstreams=upstreams, port=0, db=str(db), **settings)).start()
