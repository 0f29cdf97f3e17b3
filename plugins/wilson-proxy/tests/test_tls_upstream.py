"""An https:// upstream (as api.openai.com is): TLS verified against the system's trust store."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.upstreams import parse_upstream_options

ANSWER = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_upstream_is_verified_and_kept_alive(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}/v1"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        untrusted = ProxySettings(upstreams=parse_upstream_options([url]), port=0, db=str(tmp_path / "a.db"))
        with RunningProxy(untrusted) as proxy:  # a certificate nobody vouches for is refused
            refused = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30)
            assert refused.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in refused.text
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, as a corporate CA would be
        trusted = ProxySettings(upstreams=parse_upstream_options([url]), port=0, db=str(tmp_path / "b.db"))
        with RunningProxy(trusted) as proxy, httpx.Client(timeout=30) as client:
            for _ in range(3):
                answer = client.post(proxy.url + "/v1/chat/completions", json=body)
                assert answer.json()["choices"][0]["message"]["content"] == "over TLS"
            assert proxy.wait_recorded()["recorded"] == 3
            idle = proxy.server.idle[("https", "localhost", server.server_address[1])]
            assert len(idle) == 1  # one TLS connection, reused
    finally:
        server.shutdown()
        server.server_close()
