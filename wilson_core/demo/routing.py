"""The demo's last stage: the app switched to the tuned model by ``wilson proxy`` routes.

The app (:mod:`.app`, unchanged) is pointed at ``wilson proxy`` (its
``OPENAI_BASE_URL``), whose ``[tool.wilson.proxy]`` configuration names the
cloud upstream and one route for the categoriser's calls:

1. ``mode = "shadow"``: the cloud teacher still answers the app; the tuned model
   answers the same calls in the background.  Both answers are recorded with
   one context, and their agreement is what this step reports.
2. ``mode = "local"``: the same file with one word changed; the proxy re-reads
   it while running, and the tuned model now answers the app.

Nothing of the app changes between the two steps.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wilson_core.errors import WilsonError

from . import finance

ROUTE = "tuned-categoriser"
#: calls the app makes in each step (shadow, then local); ``--fast``: FAST_CALLS
CALLS = 20
FAST_CALLS = 8
BANNER = re.compile(r"on (http://127\.0\.0\.1:(\d+))")


def require_proxy() -> None:
    """The switch runs ``wilson proxy``, from the wilson-proxy plugin."""
    import importlib.util

    if importlib.util.find_spec("wilson_proxy") is None:
        raise WilsonError("the demo switches the app through `wilson proxy`, from the wilson-proxy plugin, which is "
                          "not installed: pip install wilson-proxy (or: wilson install wilson-proxy), "
                          "or run the data stages alone with --data-only")


def write_config(path: Path, upstream: str, provider: str, mode: str,
                 options: dict[str, str | int | float | bool] | None = None) -> None:
    """``[tool.wilson.proxy]``: the cloud upstream and the categoriser's route (written atomically).

    :param options: passed to the provider driver (flat: strings, numbers, booleans).
    """
    text = (
        "# wilson proxy's configuration: re-read while it runs when this file changes\n"
        "[tool.wilson.proxy]\n"
        f"upstreams = {{ openai = {json.dumps(upstream)} }}\n\n"
        "[[tool.wilson.proxy.routes]]\n"
        f"name = {json.dumps(ROUTE)}\n"
        f"mode = {json.dumps(mode)}\n"
        f"provider = {json.dumps(provider)}\n"
        'call_type = "categorize"\n'
        "# shadow: every call, queued for the tuned model (the app never waits for it)\n"
        "max_concurrency = 64\n"
    )
    if options:
        text += "options = { " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in options.items()) + " }\n"
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


class ProxyProcess:
    """``wilson --db DB proxy --port 0 --config FILE`` in a process of its own, as a user runs it."""

    def __init__(self, db: Path, config: Path, log: Path) -> None:
        self.args = ["--db", str(db), "proxy", "--port", "0", "--config", str(config)]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0

    def start(self, timeout: float = 120.0) -> ProxyProcess:
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "wilson_core.cli", *self.args],
                                            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = BANNER.search(self.log.read_text(encoding="utf-8", errors="replace"))
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise WilsonError(f"wilson proxy did not start: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return json.loads(answer.read())

    def route(self) -> dict[str, Any]:
        return next(r for r in self.get("/wilson/routes")["routes"] if r["name"] == ROUTE)

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise WilsonError(f"wilson proxy: {what} did not happen within {timeout:.0f} s: {self.tail()}")
            if self.process is not None and self.process.poll() is not None:
                raise WilsonError(f"wilson proxy stopped: {self.tail()}")
            time.sleep(0.1)

    def wait_shadows(self) -> None:
        def done() -> bool:
            counts = self.route()["counts"]
            return counts.get("shadowed", 0) <= counts.get("shadow_answered", 0) + counts.get("shadow_errors", 0)

        self.wait_for(done, "the tuned model's shadow answers")

    def wait_recorded(self) -> None:
        self.wait_for(lambda: self.get("/wilson/health").get("pending", 0) == 0, "recording every call")

    def wait_mode(self, mode: str) -> None:
        self.wait_for(lambda: self.route()["mode"] == mode, f"the route reload to {mode}", timeout=60)

    def stop(self) -> None:
        """SIGTERM: the proxy finishes what is in flight and records everything queued."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def use_app(clients: Any, lines: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The app categorises ``lines`` as always (one in four streamed); what it got and how fast."""
    from .app import categorise

    answers, latencies = [], []
    for number, (line, category) in enumerate(lines):
        started = time.perf_counter()
        text = categorise(clients.categoriser, line, stream=number % 4 == 0).strip()
        latencies.append((time.perf_counter() - started) * 1000.0)
        answers.append({"transaction": line, "expected": category, "answer": text})
        shown = text if len(text) <= 30 else text[:27] + "..."
        click_echo(f"      {line:<58} -> {shown!r:<16} (expected {category})")
    right = sum(_same(a["answer"], a["expected"]) for a in answers)
    return {"calls": len(answers), "accuracy": round(right / len(answers), 3),
            "app_p50_ms": round(statistics.median(latencies), 1), "answers": answers}


def shadow_agreement(db: Path, local_name: str) -> dict[str, Any]:
    """The tuned model's shadow answers against the teacher's answers to the same calls."""
    from wilson_core.store import open_store

    store = open_store(db)
    pairs = []
    for shadow in store.iter_interactions("i.provider = ?", (local_name,)):
        of = (store.get_run(shadow.run_id).metadata or {}).get("shadow_of") if shadow.run_id else None
        if of:
            pairs.append((store.get_interaction(of), shadow))
    agreed = sum(_same(teacher.response_content or "", local.response_content or "") for teacher, local in pairs)
    from wilson_core import shadowing

    stats = shadowing.agreement(store).get("categorize")  # what `wilson stats` reports for these pairs
    if stats:
        click_echo("      wilson stats, shadow agreement:" + shadowing.agreement_line("categorize", stats))
    return {
        "stats": stats,
        "pairs": len(pairs),
        "agreed": agreed,
        "agreement": round(agreed / len(pairs), 3) if pairs else None,
        "tuned_right": sum(_right(t, s.response_content) for t, s in pairs),
        "teacher_right": sum(_right(t, t.response_content) for t, _ in pairs),
    }


def _right(interaction: Any, answer: str | None) -> bool:
    return _same(answer or "", finance.true_category(interaction.user_prompt or "") or "")


def _same(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def click_echo(text: str) -> None:
    import click

    click.echo(text)
