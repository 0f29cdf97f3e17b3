"""Routes (local, shadow, fallback), their reload, `wilson proxy routes`, and `wilson serve`, with real clients."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from proxy_support import start_proxy
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.routes import Route, RouteError, load_routes, parse_route_flag

from wilson_core.store import open_store
from wilson_core.testing.upstreams import FakeUpstream, Scripted

HERE = Path(__file__).parent
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a merchant up", "parameters": {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}]


def echo(messages, tools):
    """The local model's answer names the request it answers (so mixed-up answers would show)."""
    return f"local:{messages[-1]['content']}"


def stored_rows(db: Path) -> list:
    store = open_store(db)
    try:
        return sorted(store.iter_interactions(), key=lambda i: i.created_at)
    finally:
        store.close()


def run_metadata(db: Path, run_id: str) -> dict:
    store = open_store(db)
    try:
        return store.get_run(run_id).metadata
    finally:
        store.close()


@pytest.fixture
def routed(tmp_path):
    """A proxy in front of a scripted upstream; each test sets its routes."""
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        proxy = start_proxy(upstream, tmp_path / "r.db")
        try:
            yield proxy, upstream, tmp_path / "r.db"
        finally:
            proxy.stop()


def sdk(proxy: RunningProxy, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0, default_headers=headers or None)


# -- local -----------------------------------------------------------------------------------


def test_local_route_answers_matching_calls_in_the_client_protocol(routed):
    proxy, upstream, db = routed
    proxy.server.set_routes([Route(name="tuned", mode="local", provider="scripted:tuned", model="gpt-4o-mini",
                                   options={"script": echo, "chunk_chars": 2})])
    app = sdk(proxy)
    local = app.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one"}])
    assert local.choices[0].message.content == "local:one"
    streamed = app.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "two"}],
                                           stream=True, stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "local:two"
    assert chunks[-1].usage is not None and len(chunks) > 4  # token by token, then usage
    other = app.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "three"}])
    assert other.choices[0].message.content == "from upstream"  # no route matches: upstream
    assert len(upstream.requests) == 1
    proxy.wait_recorded()
    rows = stored_rows(db)
    assert [(r.provider, r.model, r.response_content) for r in rows] == [
        ("scripted", "tuned", "local:one"), ("scripted", "tuned", "local:two"), ("openai", "gpt-4.1", "from upstream")]
    assert rows[1].ttft_ms is not None


def test_local_route_tool_calls_for_openai_and_anthropic_sdks(routed):
    proxy, _, db = routed
    reply = {"content": "checking", "tool_calls": [{"id": "c1", "name": "lookup", "arguments": {"name": "TESCO"}}]}
    proxy.server.set_routes([Route(name="all", mode="local", provider="scripted:tuned",
                                   options={"script": [reply], "cycle": True, "chunk_chars": 3})])
    chat = sdk(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS)
    call = chat.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"name": "TESCO"})
    assert chat.choices[0].finish_reason == "tool_calls"
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    tool = {"name": "lookup", "input_schema": TOOLS[0]["function"]["parameters"]}
    with claude.messages.stream(model="m", max_tokens=50, tools=[tool],
                                messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"] and final.content[1].input == {"name": "TESCO"}
    assert final.stop_reason == "tool_use"
    proxy.wait_recorded()
    assert [r.tool_calls[0].arguments for r in stored_rows(db)] == [{"name": "TESCO"}] * 2


def test_local_model_error_reaches_the_client_in_its_protocol(routed):
    proxy, _, db = routed
    proxy.server.set_routes([Route(name="broken", mode="local", provider="scripted:broken",
                                   options={"script": [{"error": "model file is corrupt"}], "cycle": True})])
    with pytest.raises(openai.InternalServerError) as raised:
        sdk(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert "model file is corrupt" in str(raised.value)
    proxy.wait_recorded()
    (row,) = stored_rows(db)
    assert row.status == "error" and "corrupt" in row.error


# -- shadow ----------------------------------------------------------------------------------


def test_shadow_the_app_gets_the_upstream_answer_and_both_are_stored_with_one_context(routed):
    proxy, upstream, db = routed
    proxy.server.set_routes([Route(name="shadow", mode="shadow", provider="scripted:tuned",
                                   options={"script": echo})])
    messages = [{"role": "system", "content": "Categorise."}, {"role": "user", "content": "UBER 12.00"}]
    reply = sdk(proxy, **{"X-Wilson-Call-Type": "categorize"}).chat.completions.create(model="m", messages=messages)
    assert reply.choices[0].message.content == "from upstream"
    deadline = time.monotonic() + 30
    while len(stored_rows(db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    app_row, shadow_row = sorted(stored_rows(db), key=lambda r: r.provider)
    assert (app_row.provider, app_row.response_content) == ("openai", "from upstream")
    assert (shadow_row.provider, shadow_row.response_content) == ("scripted", "local:UBER 12.00")
    assert shadow_row.messages == app_row.messages and shadow_row.call_type == "categorize"
    assert run_metadata(db, shadow_row.run_id) == {"shadow_of": app_row.id, "route": "shadow"}
    store = open_store(db)
    try:
        contexts = {r[0] for r in store.connection().execute("SELECT context_hash FROM interactions")}
    finally:
        store.close()
    assert len(contexts) == 1


def test_shadow_a_slow_or_broken_local_model_never_delays_or_breaks_the_app(routed):
    proxy, _, db = routed
    proxy.server.set_routes([Route(name="slow", mode="shadow", provider="scripted:slow", max_concurrency=1,
                                   options={"script": echo, "latency_s": 1.5})])
    app = sdk(proxy)
    started = time.perf_counter()
    for n in range(5):
        assert app.chat.completions.create(model="m", messages=[{"role": "user", "content": str(n)}]
                                           ).choices[0].message.content == "from upstream"
    assert time.perf_counter() - started < 1.5  # the 1.5 s local answers never held the app up
    counts = proxy.server.stats_for(proxy.server.routes[0]).counts
    assert counts["shadowed"] == 1 and counts["shadow_skipped_busy"] == 4  # the concurrency cap
    proxy.server.set_routes([Route(name="broken", mode="shadow", provider="scripted:broken",
                                   options={"script": [{"error": "boom"}], "cycle": True})])
    assert app.chat.completions.create(model="m", messages=[{"role": "user", "content": "z"}]
                                       ).choices[0].message.content == "from upstream"
    deadline = time.monotonic() + 30
    while len(stored_rows(db)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = stored_rows(db)
    assert sum(r.provider == "openai" for r in rows) == 6
    assert sorted((r.provider, r.status) for r in rows if r.provider == "scripted") == [
        ("scripted", "error"), ("scripted", "ok")]


# -- fallback --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"script": [{"error": "out of memory"}], "cycle": True}, "out of memory"),
        ({"script": ["late"], "cycle": True, "latency_s": 3.0}, "longer than 0.5 s"),
        ({"script": [{"content": None, "tool_calls": [{"id": "c", "name": "lookup", "arguments": {"nm": 1}}]}],
          "cycle": True}, "'name' is a required property"),
        ({"script": [{"content": None, "tool_calls": [{"id": "c", "name": "delete_all", "arguments": {}}]}],
          "cycle": True}, "unknown tool 'delete_all'"),
    ],
    ids=["error", "timeout", "tool-schema", "unknown-tool"],
)
def test_fallback_goes_upstream_on_error_timeout_and_schema_failure(routed, options, why):
    proxy, upstream, db = routed
    proxy.server.set_routes([Route(name="fb", mode="fallback", provider="scripted:fb", timeout=0.5, options=options)])
    reply = sdk(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS)
    assert reply.choices[0].message.content == "from upstream" and len(upstream.requests) == 1
    deadline = time.monotonic() + 30
    while len(stored_rows(db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = stored_rows(db)
    attempt = next(r for r in rows if r.provider == "scripted")
    assert attempt.status == "error" and why in attempt.error
    assert run_metadata(db, attempt.run_id)["route"] == "fb"
    assert [r.response_content for r in rows if r.provider == "openai"] == ["from upstream"]


def test_fallback_json_schema_and_a_passing_local_answer_streamed(routed):
    proxy, upstream, db = routed
    schema = {"type": "object", "properties": {"category": {"type": "string"}}, "required": ["category"]}
    form = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    proxy.server.set_routes([Route(name="fb", mode="fallback", provider="scripted:fb",
                                   options={"script": ['{"category": "Food"}', '{"kind": 1}'], "chunk_chars": 4})])
    app = sdk(proxy)
    chunks = app.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                         response_format=form, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '{"category": "Food"}'
    second = app.chat.completions.create(model="m", messages=[{"role": "user", "content": "y"}], response_format=form)
    assert second.choices[0].message.content == "from upstream"  # '{"kind": 1}' broke the schema
    assert len(upstream.requests) == 1
    deadline = time.monotonic() + 30
    while len(stored_rows(db)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    statuses = sorted((r.provider, r.status, r.response_content) for r in stored_rows(db))
    assert statuses[0] == ("openai", "ok", "from upstream")
    assert ("scripted", "ok", '{"category": "Food"}') in statuses
    assert any(s[:2] == ("scripted", "error") for s in statuses)


# -- configuration, reload, `wilson proxy routes` ----------------------------------------------


def test_route_flags_and_config_are_checked(tmp_path):
    route = parse_route_flag("shadow llamacpp:m.gguf model=gpt-4o* sample=0.25 'header=X-Route: tuned'", 0)
    assert (route.mode, route.provider, route.model, route.sample, route.header) == (
        "shadow", "llamacpp:m.gguf", "gpt-4o*", 0.25, (b"x-route", b"tuned"))
    assert route.matches("gpt-4o-mini", None, {b"x-route": b"tuned"})
    assert not route.matches("gpt-4o-mini", None, {}) and not route.matches("o3", None, {b"x-route": b"tuned"})
    for bad, message in [("sideways scripted:x", "mode must be"), ("local nothing", "NAME:MODEL"),
                         ("local scripted:x sample=2", "sample must be"), ("local scripted:x colour=red", "unknown key")]:
        with pytest.raises(RouteError, match=message):
            parse_route_flag(bad, 0)
    config = tmp_path / "pyproject.toml"
    config.write_text('[[tool.wilson.proxy.routes]]\nname = "a"\nmode = "local"\nprovider = "scripted:x"\n'
                      'call_type = "categorize"\n', encoding="utf-8")
    assert [(r.name, r.call_type) for r in load_routes(config)] == [("a", "categorize")]
    config.write_text("[tool.wilson.proxy]\nroutes = 3\n", encoding="utf-8")
    with pytest.raises(RouteError, match="array of tables"):
        load_routes(config)


def test_a_route_change_in_the_config_file_takes_effect_without_a_restart_or_a_dropped_request(tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text("[project]\nname = 'app'\n", encoding="utf-8")
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        upstreams = start_proxy.__globals__["parse_upstream_options"]([upstream.openai_url])
        settings = ProxySettings(upstreams=upstreams, port=0, db=str(tmp_path / "c.db"), config=config)
        with RunningProxy(settings) as proxy:
            answers: list[str] = []
            failures: list[BaseException] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        try:
                            reply = client.post(proxy.url + "/v1/chat/completions",
                                                json={"model": "m", "messages": [{"role": "user", "content": "q"}]})
                            answers.append(reply.json()["choices"][0]["message"]["content"])
                        except Exception as exc:  # a dropped request fails the test below
                            failures.append(exc)

            thread = threading.Thread(target=hammer)
            thread.start()
            deadline = time.monotonic() + 30  # some calls go upstream first (a busy machine may take a while)
            while len(answers) < 3 and not failures and time.monotonic() < deadline:
                time.sleep(0.05)
            config.write_text("[project]\nname = 'app'\n\n[[tool.wilson.proxy.routes]]\nname = 'tuned'\n"
                              "mode = 'local'\nprovider = 'scripted:tuned'\noptions = { script = ['from local'], "
                              "cycle = true }\n", encoding="utf-8")
            deadline = time.monotonic() + 20
            while (not answers or answers[-1] != "from local") and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
            thread.join(30)
            assert proxy.reloads == 1 and not failures
            assert answers[0] == "from upstream" and answers[-1] == "from local"
            switched = answers.index("from local")
            assert set(answers[switched:]) == {"from local"}  # once switched, it stays
            routes_shown = subprocess.run(
                [sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())", "proxy",
                 "routes", "--port", str(proxy.port)], capture_output=True, text=True, timeout=60)
            assert routes_shown.returncode == 0, routes_shown.stderr
            assert "tuned: local -> scripted:tuned for every call" in routes_shown.stdout
            assert "answered_locally" in routes_shown.stdout and "local p50" in routes_shown.stdout
            config.write_text("[[tool.wilson.proxy.routes]]\nmode = 'nonsense'\n", encoding="utf-8")
            time.sleep(2.5)  # a broken file keeps the routes that work
            assert proxy.reloads == 1 and [r.name for r in proxy.server.routes] == ["tuned"]


# -- wilson serve ----------------------------------------------------------------------------


@pytest.fixture
def served_model(tmp_path):
    settings = ProxySettings(upstreams={}, port=0, db=str(tmp_path / "serve.db"), served_model="tiny",
                             route_flags=("local scripted:tiny",))
    with RunningProxy(settings) as proxy:
        proxy.server.set_routes([Route(name="serve", mode="local", provider="scripted:tiny",
                                       options={"script": echo, "chunk_chars": 3, "chunk_delay_s": 0.005})])
        yield proxy, tmp_path / "serve.db"


def test_serve_answers_the_openai_and_anthropic_sdks_and_queues_concurrent_requests(served_model):
    proxy, db = served_model
    app = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in app.models.list().data] == ["tiny"]
    results: dict[int, str] = {}

    def ask(n: int) -> None:
        chunks = app.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"q{n}"}],
                                             stream=n % 2 == 0)
        results[n] = ("".join(c.choices[0].delta.content or "" for c in chunks if c.choices) if n % 2 == 0
                      else chunks.choices[0].message.content)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {n: f"local:q{n}" for n in range(8)}  # eight at once, none mixed up
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model="tiny", max_tokens=20, messages=[{"role": "user", "content": "hey"}])
    assert message.content[0].text == "local:hey"
    answer = httpx.post(proxy.url + "/v1/responses", json={"model": "tiny", "input": "x"})
    assert answer.status_code == 200 and answer.json()["output"][0]["content"][0]["text"] == "local:x"
    stats = proxy.wait_recorded()
    assert stats["recorded"] == 10
    assert {r.provider for r in stored_rows(db)} == {"scripted"}


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_serve_streams_to_node_fetch(served_model):
    proxy, _ = served_model
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "from node"}]}
    run = subprocess.run(["node", str(HERE / "node_client.mjs"), proxy.url + "/v1/chat/completions", json.dumps(body)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    events = [json.loads(line[6:]) for line in base64.b64decode(got["body"]).decode().split("\n\n")
              if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "local:from node"
    assert got["chunks"] >= 2


def test_serve_command_refuses_what_it_cannot_serve(tmp_path):
    (tmp_path / "empty").mkdir()
    for deployment, message in [(str(tmp_path / "missing.gguf"), "no such file"),
                                (str(tmp_path / "empty"), "no .gguf, .onnx or transformers model"),
                                ("nosuchprovider:x", "nosuchprovider")]:
        run = subprocess.run([sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())",
                              "serve", deployment, "--port", "0"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_serve_picks_the_runtime_from_the_deployment(tmp_path):
    from wilson_proxy.serving import DeploymentError, provider_spec

    gguf = tmp_path / "model-q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    onnx = tmp_path / "transformersjs" / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "model.onnx").write_bytes(b"x")
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}", encoding="utf-8")
    assert provider_spec(str(gguf)) == f"llamacpp:{gguf}"
    assert provider_spec(str(tmp_path / "transformersjs")) == f"onnx:{tmp_path / 'transformersjs'}"
    assert provider_spec(str(merged)) == f"transformers:{merged}"
    assert provider_spec("ollama:wilson-finance") == "ollama:wilson-finance"
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DeploymentError, match=".gguf"):
        provider_spec(str(tmp_path / "notes.txt"))
