"""Streaming through the facade: what capture adds to a streamed call.

Run with ``python bench/bench_streaming.py [--quick] [--json PATH]`` (or ``nox -s bench``).

One local upstream process (a minimal asyncio HTTP/1.1 server, as in
``bench_proxy.py``: an SSE stream of 8 chunks 1 ms apart, then a usage-only
chunk and ``[DONE]``) streams the same answer
to three clients, in small interleaved blocks so machine load hits all alike:

- raw: ``httpx`` reading the SSE stream and parsing each chunk's JSON itself;
- ``llm.stream()`` with ``capture=False``;
- ``llm.stream()`` with capture on (a fresh SQLite database).

(a) time to first delta added by the facade with capture on, against raw httpx,
    at p50.  Target: <= 0.5 ms (the bar issue 11 sets for the proxy).
(b) what recording a streamed call costs, without the network: a ``scripted``
    stream read to its end with capture on minus capture off (p99), against a
    raw SQLite insert of the same row (p99, same run), in interleaved blocks.
    Target: within 3x, the bar the non-streamed facade meets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import Report, Target, add_arguments, peak_rss_mib, percentile
from _upstream import ChatUpstream, free_port, serve, stop, wait_port
from bench_capture import raw_insert_times, raw_table

HERE = Path(__file__).resolve().parent
CHUNKS = 8
TEXT = "".join(f"tok{k} " for k in range(CHUNKS))


# -- the upstream (run as: bench_streaming.py --serve-upstream PORT) -----------------------


class Upstream(ChatUpstream):
    """Answers every request with the same SSE stream, chunks 1 ms apart."""

    chunks = CHUNKS


async def serve_upstream(port: int) -> None:
    await serve(Upstream, port)


# -- clients ---------------------------------------------------------------------------------
MESSAGES = [{"role": "system", "content": "You are Wilson."}, {"role": "user", "content": "How did I do?"}]


def raw_stream(client, url: str) -> tuple[float, float]:
    """(time to first text, whole stream) for one request read by plain httpx."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    text = []
    with client.stream("POST", url, json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - started
                    text.append(piece)
    assert "".join(text) == TEXT
    return first or 0.0, time.perf_counter() - started


def facade_stream(llm) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    with llm.stream(MESSAGES) as stream:
        for _ in stream:
            if first is None:
                first = time.perf_counter() - started
    assert stream.reply.text == TEXT
    return first or 0.0, time.perf_counter() - started


def scripted_times(llm, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        for _ in llm.stream(MESSAGES):
            pass
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="streams per client for (a), alternated")
    parser.add_argument("--block", type=int, default=50, help="streams per block for (b)")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved blocks for (b)")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        asyncio.run(serve_upstream(args.serve_upstream))
        return 0
    if args.quick:
        args.calls, args.rounds = min(args.calls, 60), min(args.rounds, 10)
    report = Report.from_args("streaming", args)

    import httpx

    import wilson_core

    folder = Path(tempfile.mkdtemp(prefix="wilson-bench-streaming-"))
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "bench_streaming.py"), "--serve-upstream", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, upstream, "the upstream")
        base = f"http://127.0.0.1:{port}/v1"
        url = f"{base}/chat/completions"
        on = wilson_core.LLM("openai:gpt-4o-mini", db=str(folder / "on.db"), base_url=base, api_key="x")
        off = wilson_core.LLM("openai:gpt-4o-mini", db=str(folder / "off.db"), base_url=base, api_key="x",
                              capture=False)
        client = httpx.Client(timeout=30)
        for _ in range(20):  # warm up: connections, the store, imports
            raw_stream(client, url), facade_stream(on), facade_stream(off)
        raw, plain, captured = [], [], []
        turns = [(raw, lambda: raw_stream(client, url)), (plain, lambda: facade_stream(off)),
                 (captured, lambda: facade_stream(on))]
        for n in range(args.calls):  # one each in turn, the order rotating: load swings hit all alike
            for k in range(3):
                times, call = turns[(n + k) % 3]
                times.append(call())
        client.close()
        on.close()
        off.close()
    finally:
        stop(upstream)
    stored = wilson_core.open_store(folder / "on.db").connection().execute(
        "SELECT count(*) FROM interactions WHERE status = 'ok' AND ttft_ms IS NOT NULL").fetchone()[0]

    ms = 1000.0
    ttft_raw = percentile([r[0] for r in raw], 0.5) * ms
    ttft_on = percentile([c[0] for c in captured], 0.5) * ms
    ttft_off = percentile([p[0] for p in plain], 0.5) * ms
    print(f"(a) time to first delta p50: raw httpx {ttft_raw:.3f} ms, facade capture off {ttft_off:.3f} ms, "
          f"capture on {ttft_on:.3f} ms ({args.calls} streams each, alternated)", flush=True)
    expected = 20 + args.calls
    report.add("ttft added by llm.stream (capture on) vs raw httpx", "p50 added", ttft_on - ttft_raw, unit="ms",
               baseline=ttft_raw, baseline_name="raw httpx time to first delta p50",
               target=Target("value", "<=", 0.5), passed=stored == expected,
               note=f"{stored}/{expected} streams recorded with ttft_ms; capture off {ttft_off:.3f} ms",
               peak_rss_mib=peak_rss_mib())

    # (b) no network: the cost of recording a streamed call, against a raw SQLite insert
    on = wilson_core.LLM("scripted:bench", db=str(folder / "s-on.db"), script=[TEXT], cycle=True, chunk_chars=5)
    off = wilson_core.LLM("scripted:bench", db=str(folder / "s-off.db"), script=[TEXT], cycle=True,
                          chunk_chars=5, capture=False)
    scripted_times(on, 200), scripted_times(off, 200)
    raw_conn = raw_table(folder / "raw.db")
    with_capture, without, inserts = [], [], []
    for _ in range(args.rounds):
        inserts += raw_insert_times(raw_conn, args.block)
        with_capture += scripted_times(on, args.block)
        without += scripted_times(off, args.block)
    raw_conn.close()
    us = 1e6
    on_p99, off_p99 = percentile(with_capture, 0.99) * us, percentile(without, 0.99) * us
    on_p50, off_p50 = percentile(with_capture, 0.5) * us, percentile(without, 0.5) * us
    insert_p99 = percentile(inserts, 0.99) * us
    print(f"(b) scripted stream of {len(TEXT) // 5 + 1} chunks: capture off p50 {off_p50:.0f} us p99 {off_p99:.0f} us; "
          f"capture on p50 {on_p50:.0f} us p99 {on_p99:.0f} us; raw sqlite3 insert p99 {insert_p99:.0f} us",
          flush=True)
    report.add("recording a streamed call (on - off)", "p99 added", on_p99 - off_p99, unit="us",
               baseline=insert_p99, baseline_name="raw sqlite3 INSERT p99",
               ratio=max(0.0, on_p99 - off_p99) / insert_p99 if insert_p99 else None,
               target=Target("ratio", "<=", 3.0), note=f"p50 added {on_p50 - off_p50:.0f} us")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
