"""Fixtures: a tiny Llama (wilson_train.tiny), a LoRA adapter trained a few steps, and a real
HTTP server implementing Ollama's documented blob and create endpoints."""

from __future__ import annotations

import pytest
from wilson_gguf.testing import (  # noqa: F401 - fixtures and hooks for pytest
    _one_thread,
    adapter_trainer,
    pytest_collection_modifyitems,
    tiny_adapter,
    tiny_model,
    train_adapter,
)


class OllamaAPIServer:
    """Ollama's documented create API over real HTTP: blobs by sha256 digest, create checks them."""

    def __init__(self) -> None:
        import hashlib
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.blobs: dict[str, bytes] = {}
        self.models: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _digest(self) -> str | None:
                prefix = "/api/blobs/"
                if not self.path.startswith(prefix):
                    return None
                digest = self.path[len(prefix):]
                return digest if len(digest) == 71 and digest.startswith("sha256:") else ""

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_HEAD(self):
                server.requests.append(("HEAD", self.path))
                digest = self._digest()
                if not digest:
                    return self._send(400 if digest == "" else 404)
                self._send(200 if digest in server.blobs else 404)

            def do_GET(self):
                server.requests.append(("GET", self.path))
                if self.path == "/api/version":
                    return self._send(200, {"version": "0.0.0-test"})
                self._send(404, {"error": "not found"})

            def do_POST(self):
                server.requests.append(("POST", self.path))
                body = self._body()
                digest = self._digest()
                if digest is not None:
                    if not digest:
                        return self._send(400, {"error": "invalid digest format"})
                    actual = "sha256:" + hashlib.sha256(body).hexdigest()
                    if actual != digest:
                        return self._send(400, {"error": "digest mismatch"})
                    server.blobs[digest] = body
                    return self._send(201)
                if self.path == "/api/create":
                    request = json.loads(body)
                    for kind in ("files", "adapters"):
                        for name, d in (request.get(kind) or {}).items():
                            if d not in server.blobs:
                                return self._send(400, {"error": f"{kind} {name}: blob {d} not found"})
                    if not request.get("model") or not request.get("files"):
                        return self._send(400, {"error": "model and files are required"})
                    server.models[request["model"]] = request
                    return self._send(200, {"status": "success"})
                self._send(404, {"error": "not found"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ollama_server():
    server = OllamaAPIServer()
    yield server
    server.close()
