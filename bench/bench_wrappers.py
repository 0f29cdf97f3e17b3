"""SDK wrapper benchmark: what capturing an ``openai`` SDK call adds to it.

Run with ``python bench/bench_wrappers.py [--quick] [--json PATH]`` (or ``nox -s bench``).

(a) wrapper overhead per call, non-streamed and streamed: the official
    ``openai`` client wrapped by ``wilson_core.integrations.openai.wrap`` minus
    the same client unwrapped, both answering from an in-process transport
    (``httpx``'s ``MockTransport`` replaying the bytes a local upstream sends),
    so that socket jitter (hundreds of microseconds at p99 on a busy 2-core
    machine) does not hide a difference of tens.  The SDK, its request
    building and response parsing run in full on both sides; only the wrapper
    differs.  Baseline: a raw ``sqlite3`` INSERT of the same row (2 KB system
    prompt inline, WAL, synchronous=NORMAL), as for the facade.  The three are
    measured in small interleaved chunks.  Target: overhead p99 <= 3x raw insert p99.
(b) the same calls over HTTP against a real local upstream (``FakeUpstream``),
    wrapped and not, p50: informational.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _report import Report, Target, add_arguments, apply_quick, peak_rss_mib, percentile
from bench_capture import raw_table

SYSTEM_PROMPT = ("You are a finance assistant. " + "Follow the house rules carefully. " * 80)[:2048]


def messages_for(n: int) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"How much did I spend on groceries in month {n}?"},
    ]


def raw_insert_times(conn: sqlite3.Connection, calls: int, offset: int) -> list[float]:
    sql = "INSERT INTO llm_interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    times = []
    for n in range(offset, offset + calls):
        messages = messages_for(n)
        row = (
            uuid.uuid4().hex, uuid.uuid4().hex, 1, "agent", "bench", "openai",
            messages[0]["content"], messages[1]["content"], "You spent 412.50 EUR.", None, None,
            21, 7, 28, 0.5, "ok", None, "2026-01-01T00:00:00.000000+00:00",
        )
        started = time.perf_counter()
        conn.execute(sql, row)
        times.append(time.perf_counter() - started)
    return times


def recorded_answers(stream_pieces: int) -> tuple[bytes, bytes]:
    """The bytes a local upstream sends for one answer, non-streamed and streamed."""
    import httpx

    from wilson_core.testing.upstreams import FakeUpstream, Scripted

    text = "You spent 412.50 EUR."
    with FakeUpstream(default=Scripted(text=text, fragment=max(1, len(text) // stream_pieces), serial=1)) as up:
        body = {"model": "bench", "messages": messages_for(0)}
        plain = httpx.post(f"{up.openai_url}/chat/completions", json=body).content
        streamed = httpx.post(f"{up.openai_url}/chat/completions", json=dict(
            body, stream=True, stream_options={"include_usage": True})).content
    return plain, streamed


def in_process_client(answers: tuple[bytes, bytes]):
    """An ``openai.OpenAI`` whose HTTP client answers in-process with recorded bytes."""
    import openai

    plain, streamed = answers
    # the HTTP library the SDK is built on (httpx, or httpx2 in recent releases)
    http_class = next(c for c in type(openai.OpenAI(api_key="x")._client).__mro__
                      if c.__module__.split(".")[0] in ("httpx", "httpx2"))
    http_module = sys.modules[http_class.__module__.split(".")[0]]

    def handler(request):
        if json.loads(request.content).get("stream"):
            return http_module.Response(200, headers={"content-type": "text/event-stream"},
                                        stream=http_module.ByteStream(streamed))
        return http_module.Response(200, headers={"content-type": "application/json"}, content=plain)

    http = http_module.Client(transport=http_module.MockTransport(handler))
    return openai.OpenAI(base_url="http://bench.invalid/v1", api_key="bench", max_retries=0, http_client=http)


def call_times(client, calls: int, offset: int, stream: bool) -> list[float]:
    times = []
    for n in range(offset, offset + calls):
        messages = messages_for(n)
        started = time.perf_counter()
        if stream:
            for _ in client.chat.completions.create(model="bench", messages=messages, stream=True,
                                                    stream_options={"include_usage": True}):
                pass
        else:
            client.chat.completions.create(model="bench", messages=messages)
        times.append(time.perf_counter() - started)
    return times


def bench_overhead(folder: Path, calls: int, rounds: int, stream: bool) -> dict:
    from wilson_core.integrations.openai import wrap

    answers = recorded_answers(stream_pieces=20)
    plain = in_process_client(answers)
    wrapped = wrap(in_process_client(answers), db=str(folder / f"wrapped-{stream}.db"))
    call_times(wrapped, 200, 0, stream)  # warm up: open the store, fill the caches
    call_times(plain, 200, 0, stream)
    raw_conn = raw_table(folder / f"raw-{stream}.db")
    raw, on, off = [], [], []
    cpu = {"raw": 0.0, "on": 0.0, "off": 0.0}  # process CPU time: less swayed by other processes
    for r in range(rounds):
        offset = 1000 + r * calls
        for name, values, measure, arguments in (
            ("raw", raw, raw_insert_times, (raw_conn, calls, offset)),
            ("on", on, call_times, (wrapped, calls, offset, stream)),
            ("off", off, call_times, (plain, calls, offset, stream)),
        ):
            started = time.process_time()
            values += measure(*arguments)
            cpu[name] += time.process_time() - started
    raw_conn.close()
    us = 1e6
    result = {
        "raw_insert_p50_us": percentile(raw, 0.5) * us, "raw_insert_p99_us": percentile(raw, 0.99) * us,
        "wrapped_p50_us": percentile(on, 0.5) * us, "wrapped_p99_us": percentile(on, 0.99) * us,
        "plain_p50_us": percentile(off, 0.5) * us, "plain_p99_us": percentile(off, 0.99) * us,
        "calls": len(on),
    }
    result["overhead_p50_us"] = result["wrapped_p50_us"] - result["plain_p50_us"]
    result["overhead_cpu_us"] = (cpu["on"] - cpu["off"]) / len(on) * us
    result["raw_insert_cpu_us"] = cpu["raw"] / len(raw) * us
    result["plain_cpu_us"] = cpu["off"] / len(off) * us
    result["overhead_p99_us"] = result["wrapped_p99_us"] - result["plain_p99_us"]
    result["stored"] = stored_count(folder / f"wrapped-{stream}.db")
    return result


def stored_count(path: Path) -> int:
    import wilson_core

    store = wilson_core.open_store(str(path))
    try:
        return store.count()
    finally:
        store.close()


def bench_http(folder: Path, calls: int) -> dict:
    import openai

    from wilson_core.integrations.openai import wrap
    from wilson_core.testing.upstreams import FakeUpstream, Scripted

    with FakeUpstream(default=Scripted(text="You spent 412.50 EUR.", serial=1)) as up:
        plain = openai.OpenAI(base_url=up.openai_url, api_key="bench", max_retries=0)
        wrapped = wrap(openai.OpenAI(base_url=up.openai_url, api_key="bench", max_retries=0),
                       db=str(folder / "http.db"))
        call_times(wrapped, 50, 0, False)
        call_times(plain, 50, 0, False)
        on, off = [], []
        for r in range(10):
            on += call_times(wrapped, calls // 10, r * calls, False)
            off += call_times(plain, calls // 10, r * calls, False)
    us = 1e6
    return {"wrapped_p50_us": percentile(on, 0.5) * us, "plain_p50_us": percentile(off, 0.5) * us,
            "wrapped_p99_us": percentile(on, 0.99) * us, "plain_p99_us": percentile(off, 0.99) * us}


QUICK = {"calls": 100, "rounds": 10, "http_calls": 200}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per interleaved chunk")
    parser.add_argument("--rounds", type=int, default=50, help="interleaved chunks")
    parser.add_argument("--http-calls", type=int, default=1000, help="calls over HTTP for (b)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    apply_quick(parser, args, QUICK)
    report = Report.from_args("wrappers", args)
    with tempfile.TemporaryDirectory(prefix="wilson-bench-") as tmp:
        folder = Path(tmp)
        os.environ.pop("WILSON_DB", None)
        for stream in (False, True):
            o = bench_overhead(folder, args.calls, args.rounds, stream)
            kind = "streamed (20 chunks + usage chunk)" if stream else "non-streamed"
            print(f"(a) openai SDK wrapper overhead, {kind}, {o['calls']:,} calls")
            print(f"    raw sqlite3 insert  p50 {o['raw_insert_p50_us']:8.1f} us   p99 {o['raw_insert_p99_us']:8.1f} us")
            print(f"    plain SDK call      p50 {o['plain_p50_us']:8.1f} us   p99 {o['plain_p99_us']:8.1f} us")
            print(f"    wrapped SDK call    p50 {o['wrapped_p50_us']:8.1f} us   p99 {o['wrapped_p99_us']:8.1f} us")
            print(f"    overhead            p50 {o['overhead_p50_us']:8.1f} us   p99 {o['overhead_p99_us']:8.1f} us")
            print(f"    CPU per call: overhead {o['overhead_cpu_us']:.0f} us, plain call {o['plain_cpu_us']:.0f} us, "
                  f"raw insert {o['raw_insert_cpu_us']:.0f} us")
            complete = o["stored"] == o["calls"] + 200
            report.add(
                f"wrapper overhead p99, {'streamed' if stream else 'non-streamed'}",
                f"openai SDK call wrapped minus unwrapped, p99 of {o['calls']:,} calls, in-process transport "
                "(2 KB system prompt)",
                o["overhead_p99_us"], unit="us", baseline=o["raw_insert_p99_us"],
                baseline_name="raw sqlite3 INSERT p99", target=Target("ratio", "<=", 3),
                passed=None if complete else False,
                peak_rss_mib=peak_rss_mib(),
                note=f"p50: {o['overhead_p50_us']:.0f} us vs {o['raw_insert_p50_us']:.0f} us; "
                     f"plain call p50 {o['plain_p50_us']:.0f} us; stored {o['stored']:,} of {o['calls'] + 200:,}",
                extra=o,
            )
            report.add(
                f"wrapper CPU per call, {'streamed' if stream else 'non-streamed'}",
                "process CPU time per call, wrapped minus unwrapped (mean), in-process transport",
                o["overhead_cpu_us"], unit="us", baseline=o["raw_insert_cpu_us"],
                baseline_name="raw sqlite3 INSERT CPU (mean)",
                note=f"plain SDK call {o['plain_cpu_us']:.0f} us CPU; {os.getloadavg()[0]:.1f} load average",
                extra={},
            )
        h = bench_http(folder, args.http_calls)
        print(f"(b) over HTTP to a local upstream: wrapped p50 {h['wrapped_p50_us']:.0f} us, "
              f"plain p50 {h['plain_p50_us']:.0f} us")
        report.add(
            "wrapped call over HTTP p50",
            f"openai SDK against a local upstream, {args.http_calls:,} calls each, wrapped vs plain",
            h["wrapped_p50_us"], unit="us", baseline=h["plain_p50_us"], baseline_name="plain SDK call p50",
            note=f"p99 {h['wrapped_p99_us']:.0f} us vs {h['plain_p99_us']:.0f} us", extra=h,
        )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
