"""Ollama's HTTP API for creating a model from local GGUF files.

    HEAD /api/blobs/sha256:<hex>   200 if the server has the blob, 404 if not
    POST /api/blobs/sha256:<hex>   the file's bytes; 201 when stored (400 if the digest differs)
    POST /api/create               {"model", "files", "adapters", "template", "parameters",
                                    "system", "stream": false} -> {"status": "success"}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployError

DEFAULT_HOST = "http://127.0.0.1:11434"
CHUNK = 1 << 20


def sha256_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


class OllamaClient:
    def __init__(self, host: str = DEFAULT_HOST, timeout: float = 600.0) -> None:
        self.host = host.rstrip("/")
        if "://" not in self.host:
            self.host = "http://" + self.host
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return httpx.request(method, f"{self.host}{path}", timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise DeployError(f"cannot reach Ollama at {self.host}: {exc}") from exc

    def reachable(self, timeout: float = 2.0) -> bool:
        import httpx

        try:
            httpx.get(f"{self.host}/api/version", timeout=timeout)
        except httpx.HTTPError:
            return False
        return True

    def has_blob(self, digest: str) -> bool:
        response = self._request("HEAD", f"/api/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise DeployError(f"Ollama at {self.host}: HEAD /api/blobs/{digest} answered {response.status_code}")

    def push_blob(self, path: Path, digest: str | None = None) -> tuple[str, bool]:
        """Upload ``path`` unless the server has it; returns (digest, uploaded)."""
        digest = digest or sha256_digest(path)
        if self.has_blob(digest):
            return digest, False
        response = self._request("POST", f"/api/blobs/{digest}", content=_chunks(path))
        if response.status_code not in (200, 201):
            raise DeployError(f"Ollama at {self.host} refused blob {path.name} ({digest}): "
                              f"HTTP {response.status_code} {response.text[:300]}")
        return digest, True

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self._request("POST", "/api/create", json={**body, "stream": False})
        if response.status_code != 200:
            raise DeployError(f"Ollama at {self.host} could not create {body.get('model')!r}: "
                              f"HTTP {response.status_code} {response.text[:500]}")
        try:
            data = response.json()
        except ValueError:
            raise DeployError(f"Ollama at {self.host}: unexpected /api/create answer {response.text[:300]}") from None
        if data.get("status") != "success":
            raise DeployError(f"Ollama at {self.host} could not create {body.get('model')!r}: {data}")
        return data
