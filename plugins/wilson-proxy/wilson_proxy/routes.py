"""Routes: which calls a local model answers instead of (``local``), beside (``shadow``) or
before (``fallback``) the upstream.

In ``pyproject.toml``::

    [[tool.wilson.proxy.routes]]
    name = "categorize"                    # shown by `wilson proxy routes` (default: route-N)
    mode = "shadow"                        # local | shadow | fallback
    provider = "llamacpp:deploy/model.gguf"
    model = "gpt-4o-mini"                  # match: the request's model (a glob), optional
    call_type = "categorize"               # match: X-Wilson-Call-Type, optional
    header = "X-Route: tuned"              # match: a request header and its value, optional
    sample = 0.25                          # shadow: share of matching calls also sent locally
    max_concurrency = 1                    # shadow: local answers in flight at most (others skipped)
    timeout = 30                           # fallback: seconds before the upstream answers instead
    options = { n_ctx = 2048 }             # passed to the provider driver

or with ``--route "MODE PROVIDER [KEY=VALUE ...]"`` (same keys).  The first
route that matches a call wins; a call no route matches goes upstream.

``provider = "registry:live"`` names the model registry's live model (:mod:`.live`):
promotion and rollback switch the route's traffic with no restart, and while no
model is live the route matches nothing (its calls go upstream).
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

from attrs import field, frozen

from .live import LIVE

MODES = ("local", "shadow", "fallback")
KEYS = {"name", "mode", "provider", "model", "call_type", "header", "sample", "max_concurrency", "timeout",
        "options"}


class RouteError(ValueError):
    """A route that cannot be used (the message says which and why)."""


@frozen
class Route:
    name: str
    mode: str
    provider: str
    model: str | None = None
    call_type: str | None = None
    header: tuple[bytes, bytes] | None = None
    sample: float = 1.0
    max_concurrency: int = 1
    timeout: float = 60.0
    options: dict[str, Any] = field(factory=dict)

    def matches(self, model: str | None, call_type: str | None, headers: dict[bytes, bytes]) -> bool:
        if self.model is not None and (model is None or not fnmatch.fnmatchcase(model, self.model)):
            return False
        if self.call_type is not None and call_type != self.call_type:
            return False
        if self.header is not None and headers.get(self.header[0]) != self.header[1]:
            return False
        return True

    def describe(self) -> str:
        parts = [f"model={self.model}"] if self.model else []
        if self.call_type:
            parts.append(f"call_type={self.call_type}")
        if self.header:
            parts.append(f"header {self.header[0].decode()}: {self.header[1].decode()}")
        return ", ".join(parts) or "every call"


def route_from(data: dict[str, Any], index: int, where: str) -> Route:
    """A route from a table (``pyproject.toml``) or a flag's keys; :class:`RouteError` when bad."""
    unknown = set(data) - KEYS
    if unknown:
        raise RouteError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    mode = data.get("mode")
    if mode not in MODES:
        raise RouteError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    provider = data.get("provider")
    if not isinstance(provider, str) or ":" not in provider:
        raise RouteError(f"{where}: provider must be written NAME:MODEL (e.g. llamacpp:model.gguf), got {provider!r}")
    if provider.startswith("registry:") and provider != LIVE:
        raise RouteError(f"{where}: the registry's model is named {LIVE!r} (the live model), got {provider!r}")
    header = data.get("header")
    parsed_header = None
    if header is not None:
        name, colon, value = str(header).partition(":")
        if not colon or not name.strip():
            raise RouteError(f"{where}: header must be written 'Name: value', got {header!r}")
        parsed_header = (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
    try:
        sample = float(data.get("sample", 1.0))
        max_concurrency = int(data.get("max_concurrency", 1))
        timeout = float(data.get("timeout", 60.0))
    except (TypeError, ValueError) as exc:
        raise RouteError(f"{where}: {exc}") from None
    if not 0.0 <= sample <= 1.0 or max_concurrency < 1 or timeout <= 0:
        raise RouteError(f"{where}: sample must be 0-1, max_concurrency >= 1 and timeout > 0")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise RouteError(f"{where}: options must be a table")
    return Route(
        name=str(data.get("name") or f"route-{index + 1}"), mode=mode, provider=provider,
        model=str(data["model"]) if data.get("model") is not None else None,
        call_type=str(data["call_type"]) if data.get("call_type") is not None else None,
        header=parsed_header, sample=sample, max_concurrency=max_concurrency, timeout=timeout, options=options,
    )


def parse_route_flag(text: str, index: int) -> Route:
    """``--route "MODE PROVIDER [KEY=VALUE ...]"``."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise RouteError(f"--route {text!r}: {exc}") from None
    if len(words) < 2:
        raise RouteError(f"--route must be 'MODE PROVIDER [KEY=VALUE ...]', got {text!r}")
    data: dict[str, Any] = {"mode": words[0], "provider": words[1]}
    for word in words[2:]:
        key, equals, value = word.partition("=")
        if not equals:
            raise RouteError(f"--route {text!r}: {word!r} is not KEY=VALUE")
        try:
            data[key] = json.loads(value) if key in ("sample", "max_concurrency", "timeout", "options") else value
        except ValueError:
            data[key] = value
    return route_from(data, index, f"--route {text!r}")


def read_config(path: Path) -> dict[str, Any]:
    """``[tool.wilson.proxy]`` of ``path`` (empty when the file or table is missing)."""
    from wilson_core.settings import tool_table

    return tool_table(path, "proxy", RouteError)


def load_routes(path: Path | None, flags: tuple[str, ...] | list[str] = ()) -> list[Route]:
    """Routes from ``--route`` flags first, then from ``path``'s ``[tool.wilson.proxy]``."""
    routes = [parse_route_flag(text, i) for i, text in enumerate(flags)]
    if path is not None:
        table = read_config(path).get("routes", [])
        if not isinstance(table, list):
            raise RouteError(f"{path}: routes must be an array of tables ([[tool.wilson.proxy.routes]])")
        for i, data in enumerate(table):
            if not isinstance(data, dict):
                raise RouteError(f"{path}: route {i + 1} must be a table")
            routes.append(route_from(data, len(routes), f"{path}: route {i + 1}"))
    names = [r.name for r in routes]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RouteError(f"route names must be unique: {', '.join(duplicated)}")
    return routes


class RouteStats:
    """Recent counts and latencies of one route (kept across reloads by its name)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.latencies: deque[float] = deque(maxlen=500)
        self.shadow_latencies: deque[float] = deque(maxlen=500)
        self.last = 0.0

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.last = time.time()

    def as_json(self) -> dict[str, Any]:
        def p50(values: deque[float]) -> float | None:
            return round(statistics.median(values), 2) if values else None

        return {"counts": dict(self.counts), "p50_ms": p50(self.latencies),
                "shadow_p50_ms": p50(self.shadow_latencies), "last_call": self.last or None}
