"""A ``registry:live`` route follows the model registry: promote A, calls go to A; promote B,
calls go to B; roll back, A again; all without restarting the proxy.

Two real tiny transformers models (wilson_train.tiny, different seeds) are registered in the
proxy's own database; the official openai SDK calls the real proxy on localhost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import openai
import pytest
from proxy_support import start_proxy
from wilson_proxy.routes import RouteError, parse_route_flag

from wilson_core.cli import main
from wilson_core.store import open_store
from wilson_core.store.registry import Registry
from wilson_core.testing.upstreams import FakeUpstream, Scripted

pytest.importorskip("wilson_train", reason="needs wilson-train (tiny models)")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MESSAGES = [{"role": "user", "content": "Categorise: coffee at the station, 3.20 EUR"}]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    from wilson_train.tiny import build_tiny_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("live-models")
    return {name: build_tiny_model(root / name, arch="llama", seed=seed) for seed, name in enumerate("ab")}


def registered(db: Path, models: dict[str, Path]) -> Registry:
    registry = Registry(open_store(db))
    for name, folder in models.items():
        registry.register(f"m-{name}", base="tiny", trainer="lora-sft", settings={"seed": name}, export_hash=name,
                          manifest=None, counts={}, path=str(folder), pipeline_run="001", examples=[])
    return registry


def serves(proxy) -> str | None:
    return httpx.get(proxy.url + "/wilson/routes").json()["routes"][0]["serves"]


def wait_serving(proxy, spec: str | None, within: float) -> float:
    started = time.monotonic()
    while serves(proxy) != spec:
        assert time.monotonic() - started < within, f"the proxy still serves {serves(proxy)!r}, not {spec!r}"
        time.sleep(0.05)
    return time.monotonic() - started


def answered_by(proxy, db: Path, count: int) -> list[tuple[str, str]]:
    """(provider, model) of the last ``count`` interactions the proxy recorded."""
    stats = proxy.wait_recorded(60)
    assert stats["capture_errors"] == 0 and stats["lost"] == 0, stats
    store = open_store(db)
    try:
        rows = sorted(store.iter_interactions(), key=lambda r: r.created_at)
    finally:
        store.close()
    return [(r.provider, r.model) for r in rows[-count:]]


def ask(app: openai.OpenAI, stream: bool = False) -> str:
    if stream:
        chunks = app.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=4, temperature=0,
                                             stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = app.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=4, temperature=0)
    return reply.choices[0].message.content or ""


def test_a_live_route_follows_promotion_and_rollback_without_a_restart(models, tmp_path):
    db = tmp_path / "live.db"
    registry = registered(db, models)
    a, b = (f"transformers:{models[name]}" for name in "ab")
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        proxy = start_proxy(upstream, db, route_flags=("local registry:live",), live_check_s=0.2)
        try:
            app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0, timeout=120)
            assert serves(proxy) is None
            assert ask(app) == "from upstream"  # nothing is live yet: the route matches nothing
            assert len(upstream.requests) == 1

            registry.promote("m-a")
            wait_serving(proxy, a, within=30)
            ask(app), ask(app, stream=True)
            assert answered_by(proxy, db, 2) == [("transformers", str(models["a"]))] * 2

            registry.promote("m-b")
            wait_serving(proxy, b, within=30)
            ask(app, stream=True), ask(app)
            assert answered_by(proxy, db, 2) == [("transformers", str(models["b"]))] * 2

            registry.rollback()
            wait_serving(proxy, a, within=30)
            ask(app)
            assert answered_by(proxy, db, 1) == [("transformers", str(models["a"]))]
            assert len(upstream.requests) == 1  # every later call was answered by the live model
            # the model that is no longer live was let go (its queued calls answered first)
            assert set(proxy.server.local_models) == {a}
        finally:
            proxy.stop()
    registry.store.close()


def test_a_reload_reads_the_live_model_at_once_and_a_deployment_is_preferred(models, tmp_path, capsys):
    db = tmp_path / "live.db"
    registry = registered(db, models)
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        # the background check is an hour away: only the reload (SIGHUP) can switch it
        proxy = start_proxy(upstream, db, route_flags=("local registry:live",), live_check_s=3600)
        try:
            registry.promote("m-a")
            time.sleep(0.5)
            assert serves(proxy) is None
            app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0, timeout=120)
            assert ask(app) == "from upstream"  # calls never read the registry: only the check does
            capsys.readouterr()
            assert main(["proxy", "routes", "--port", str(proxy.port)]) == 0
            assert "serves nothing: no model is live" in capsys.readouterr().out
            assert proxy.reload()
            assert wait_serving(proxy, f"transformers:{models['a']}", within=10) < 10
            assert main(["proxy", "routes", "--port", str(proxy.port)]) == 0
            assert f"serves transformers:{models['a']}" in capsys.readouterr().out
            # a deployment of the live model (here: the other folder, as a transformers deployment) wins
            # over its training folder once it is recorded, on the next check
            registry.record_deployment("m-a", "transformers", str(models["b"]), f"transformers:{models['b']}", True)
            assert proxy.reload()
            wait_serving(proxy, f"transformers:{models['b']}", within=10)
            ask(app)
            assert answered_by(proxy, db, 1) == [("transformers", str(models["b"]))]
            assert proxy.live.describe()["model_id"] == "m-a"
        finally:
            proxy.stop()
    registry.store.close()


def test_only_the_live_model_can_be_named_from_the_registry():
    assert parse_route_flag("local registry:live", 0).provider == "registry:live"
    with pytest.raises(RouteError, match="registry:live"):
        parse_route_flag("local registry:m-123", 0)


def test_a_registry_that_cannot_be_read_keeps_the_last_live_model(tmp_path, caplog):
    from wilson_proxy.live import LiveModel

    folders = {"a": tmp_path / "a", "b": tmp_path / "b"}  # never loaded here: only resolved
    db = tmp_path / "live.db"
    registry = registered(db, folders)
    registry.promote("m-a")
    live = LiveModel(str(db), check_s=3600)
    try:
        assert live.check() and live.spec == f"transformers:{folders['a']}" and live.error is None
        assert not live.check() and live.checks == 2  # nothing changed: nothing resolved again
        registry.store.connection().execute("DROP TABLE registry_live")  # e.g. an old backup restored under it
        with caplog.at_level("WARNING", logger="wilson.proxy"):
            assert not live.check()
        assert live.spec == f"transformers:{folders['a']}" and "registry_live" in live.error
        assert "the last one stays" in caplog.text
    finally:
        live.close()
        registry.store.close()
    not_wilson = tmp_path / "notes.db"
    not_wilson.write_text("my notes, not a database\n")
    other = LiveModel(str(not_wilson))
    try:
        assert not other.check() and other.spec is None and other.error
        assert not_wilson.read_text() == "my notes, not a database\n"  # never changed
    finally:
        other.close()
