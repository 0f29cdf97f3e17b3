"""A client in another language (Node's fetch), and `wilson proxy` as a user starts it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from wilson_core.store import open_store
from wilson_core.testing.upstreams import FakeUpstream, Scripted

HERE = Path(__file__).parent
BODY = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "AMAZON MKTPLACE 23.99 — ünïcödé"}]}


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_fetch_streams_through_the_proxy_byte_for_byte(proxied):
    scripted = Scripted(text="Shopping — online ✓", piece=4, fragment=2, serial=3, delay=0.005,
                        tool_calls=[("lookup_merchant", {"name": "AMAZON"})])  # paced: chunks reach Node apart
    proxied.upstream.push(scripted, scripted)
    with httpx.stream("POST", proxied.upstream.openai_url + "/chat/completions", json=BODY, timeout=30) as direct:
        expected = b"".join(direct.iter_raw())
    run = subprocess.run(["node", str(HERE / "node_client.mjs"), proxied.openai_url + "/chat/completions",
                          json.dumps(BODY)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["status"] == 200 and got["contentType"].startswith("text/event-stream")
    assert base64.b64decode(got["body"]) == expected
    assert got["chunks"] > 1  # relayed as it came, not in one piece
    (stored,) = proxied.stored(1)
    assert stored.call_type == "node" and stored.response_content == "Shopping — online ✓"
    assert stored.tool_calls[0].arguments == {"name": "AMAZON"} and stored.messages[0]["content"] == BODY[
        "messages"][0]["content"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wilson(*args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_the_command_serves_records_and_drains_on_sigterm(tmp_path):
    db = tmp_path / "cli.db"
    port = free_port()
    with FakeUpstream(default=Scripted(text="Cash withdrawal")) as upstream:
        process = wilson("--db", str(db), "proxy", "--port", str(port), "--upstream", upstream.openai_url)
        try:
            banner = process.stdout.readline() + process.stdout.readline()
            assert f"Wilson proxy on http://127.0.0.1:{port}" in banner, banner + process.stderr.read()
            assert f"OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in banner
            for _ in range(20):
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                                    json={"model": "m", "messages": [{"role": "user", "content": "ATM 20"}]})
                assert answer.json()["choices"][0]["message"]["content"] == "Cash withdrawal"
        finally:
            process.terminate()
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "20 calls recorded, 0 could not be" in out
    store = open_store(db)
    try:
        assert store.count() == 20
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--host", "0.0.0.0", "--allow-remote"], "needs a token"),
        (["--upstream", "ftp://example.com"], "http:// or https://"),
        (["--upstream", "gemini=https://x"], "unknown protocol 'gemini'"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(args, message):
    env = {**os.environ}
    env.pop("WILSON_PROXY_TOKEN", None)
    process = wilson("proxy", "--port", "0", *args, env=env)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and message in err and "Traceback" not in err


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = wilson("proxy", "--port", str(busy.getsockname()[1]), "--no-record")
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "cannot listen on" in err and "Traceback" not in err


def test_remote_binding_requires_the_token_on_every_request(tmp_path):
    from wilson_proxy.app import ProxySettings, RunningProxy
    from wilson_proxy.upstreams import parse_upstream_options

    token = "t0ken-" + "x" * 20
    with FakeUpstream(default=Scripted(text="ok")) as upstream:
        settings = ProxySettings(upstreams=parse_upstream_options([upstream.openai_url]), port=0,
                                 db=str(tmp_path / "t.db"), token=token)
        with RunningProxy(settings) as proxy:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            denied = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30)
            assert denied.status_code == 401 and "X-Wilson-Token" in denied.json()["error"]["message"]
            allowed = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30,
                                 headers={"X-Wilson-Token": token})
            assert allowed.status_code == 200
            assert "x-wilson-token" not in {k.lower() for k in upstream.requests[-1].headers}
            assert len(upstream.requests) == 1


def test_unknown_path_and_unreachable_upstream(tmp_path):
    from wilson_proxy.app import ProxySettings, RunningProxy
    from wilson_proxy.upstreams import parse_upstream_options

    dead = free_port()
    settings = ProxySettings(upstreams=parse_upstream_options([f"http://127.0.0.1:{dead}/v1",
                                                               f"anthropic=http://127.0.0.1:{dead}"]),
                             port=0, db=str(tmp_path / "u.db"))
    with RunningProxy(settings) as proxy, httpx.Client(timeout=30) as client:
        missing = client.get(proxy.url + "/nothing/here")
        assert missing.status_code == 404 and "/v1/messages" in missing.json()["error"]["message"]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        failed = client.post(proxy.url + "/v1/chat/completions", json=body)
        assert failed.status_code == 502 and "unreachable" in failed.json()["error"]["message"]
        shaped = client.post(proxy.url + "/v1/messages", json={**body, "max_tokens": 5})
        assert shaped.status_code == 502 and shaped.json()["type"] == "error"  # Anthropic's error shape
        stats = proxy.wait_recorded()
    assert stats["recorded"] == 2
    store = open_store(tmp_path / "u.db")
    try:
        statuses = sorted((i.provider, i.status) for i in store.iter_interactions())
        assert statuses == [("anthropic", "error"), ("openai", "error")]
        assert all("unreachable" in i.error for i in store.iter_interactions())
    finally:
        store.close()


def test_keep_alive_and_pipelined_requests_on_one_connection(proxied):
    proxied.upstream.push(Scripted(text="one"), Scripted(text="two"), Scripted(text="three"))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    port = int(proxied.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request * 3)  # three requests in one write
        data = b""
        deadline = time.monotonic() + 30
        while data.count(b"HTTP/1.1 200") < 3 or not data.rstrip().endswith(b"}"):
            assert time.monotonic() < deadline, data
            data += sock.recv(65536)
    texts = re.findall(rb'"content":"(one|two|three)"', data)
    assert texts == [b"one", b"two", b"three"]
    assert [i.response_content for i in proxied.stored(3)] == ["one", "two", "three"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_example(proxied, tmp_path):
    """docs/capture.md's curl command, as written there (the proxy's address put in)."""
    docs = (HERE.parents[2] / "docs" / "capture.md").read_text(encoding="utf-8")
    block = docs.split("A call through it with curl:", 1)[1].split("```", 2)[1]
    command = block.split("\nwilson show", 1)[0].strip().replace("http://127.0.0.1:8787", proxied.url)
    proxied.upstream.push(Scripted(text="Food & Drink"))
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OPENAI_API_KEY": "sk-doc"})
    assert run.returncode == 0 and json.loads(run.stdout)["choices"][0]["message"]["content"] == "Food & Drink"
    (stored,) = proxied.stored(1)
    assert (stored.run_id, stored.call_type) == ("invoice-42", "categorize")
    shown = subprocess.run([sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())",
                            "--db", str(proxied.db), "show", "invoice-42"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and "Food & Drink" in shown.stdout, shown.stderr


def test_a_writer_that_dies_is_replaced_and_later_calls_are_recorded(tmp_path):
    from wilson_proxy.app import ProxySettings, RunningProxy
    from wilson_proxy.upstreams import parse_upstream_options

    with FakeUpstream(default=Scripted(text="ok")) as upstream:
        settings = ProxySettings(upstreams=parse_upstream_options([upstream.openai_url]), port=0,
                                 db=str(tmp_path / "w.db"))
        with RunningProxy(settings) as proxy, httpx.Client(timeout=30) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            client.post(proxy.url + "/v1/chat/completions", json=body)
            assert proxy.wait_recorded()["recorded"] == 1
            first = proxy.recorder.process
            first.kill()
            first.wait(30)
            for _ in range(5):  # some while the new writer starts: held, then handed to it
                assert client.post(proxy.url + "/v1/chat/completions", json=body).status_code == 200
            deadline = time.monotonic() + 60
            while proxy.recorder.stats()["recorded"] < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = proxy.recorder.stats()
    assert stats["recorded"] == 6 and stats["lost"] == 0 and stats["writer_restarts"] == 1
    store = open_store(tmp_path / "w.db")
    try:
        assert store.count() == 6
    finally:
        store.close()
