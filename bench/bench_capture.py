"""Capture benchmark: overhead per call, concurrent throughput, database size.

Run with ``python bench/bench_capture.py [--quick] [--json PATH]`` (or ``nox -s bench``).  Every figure
is compared with a baseline measured in the same run and printed as a ratio:

(a) capture overhead per call: the facade with the ``scripted`` provider,
    capture on minus capture off, against a raw ``sqlite3`` INSERT of the same
    row (2 KB system prompt and 4 KB of tool schemas inline, the app's JSON text
    of the tools made once) with the same pragmas (WAL, synchronous=NORMAL).
    Target: overhead p99 <= 3x raw insert p99; p50 reported, and CPU time per call
    (``time.process_time``: less noisy on a loaded machine).  The same with
    ``WILSON_CAPTURE_WRITE=background`` (the record handed to a writer thread; the
    queue written after each chunk, its CPU counted): target p50 < 2x raw insert p50.
(b) concurrent throughput: 4 threads x 2 processes capturing into one
    database, synchronous writes and background writer (each process writes
    its queue before its clock stops).  Target: >= 5,000 interactions/s, 0 lost.
(c) database size for N interactions sharing 3 system prompts of 2 KB and a
    4 KB tool-schema set, against a naive one-row-per-call table.
    Target: <= 0.4x.
(d) the floor of (a), informational: Wilson's INSERT statement alone (rows built
    beforehand, the run row made by the ``interactions_create_run`` trigger, three
    secondary indexes) against the raw INSERT, interleaved; p50 ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _report import Report, Target, add_arguments, peak_rss_mib

SYSTEM_PROMPTS = [
    (f"You are finance assistant #{n}. " + "Follow the house rules carefully. " * 80)[:2048]
    for n in range(3)
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{n}",
            "description": ("Look up the account data the user asks about. " * 6)[:250],
            "parameters": {
                "type": "object",
                "properties": {
                    "account": {"type": "string", "description": "account id"},
                    "period": {"type": "string", "description": "YYYY-MM"},
                },
                "required": ["account"],
            },
        },
    }
    for n in range(8)
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def messages_for(n: int) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[n % 3]},
        {"role": "user", "content": f"How much did I spend on groceries in month {n}?"},
    ]


# -- (a) overhead per call -----------------------------------------------------


def raw_table(path: Path) -> sqlite3.Connection:
    """The baseline: a plain table, prompt inline, autocommit, same pragmas as the store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE llm_interactions (id TEXT PRIMARY KEY, run_id TEXT, sequence_num INTEGER,"
        " call_type TEXT, model TEXT, provider TEXT, system_prompt TEXT, user_prompt TEXT,"
        " response_content TEXT, tool_calls_json TEXT, tool_defs_json TEXT, input_tokens INTEGER,"
        " output_tokens INTEGER, total_tokens INTEGER, duration_ms REAL, status TEXT, error TEXT,"
        " created_at TEXT)"
    )
    return conn


def raw_insert_times(conn: sqlite3.Connection, calls: int) -> list[float]:
    """A raw sqlite3 insert of the same row as the facade captures."""
    tools_json = json.dumps(TOOLS)
    sql = "INSERT INTO llm_interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    times = []
    for n in range(calls):
        messages = messages_for(n)
        row = (
            uuid.uuid4().hex, uuid.uuid4().hex, 1, "agent", "bench", "scripted",
            messages[0]["content"], messages[1]["content"], "ok", None, tools_json,
            10, 1, 11, 0.01, "ok", None, "2026-01-01T00:00:00.000000+00:00",
        )
        started = time.perf_counter()
        conn.execute(sql, row)
        times.append(time.perf_counter() - started)
    return times


def facade_times(llm, calls: int) -> list[float]:
    times = []
    for n in range(calls):
        messages = messages_for(n)
        started = time.perf_counter()
        llm.chat(messages, tools=TOOLS)
        times.append(time.perf_counter() - started)
    return times


def bench_overhead(folder: Path, calls: int, rounds: int) -> dict:
    import wilson_core

    on = wilson_core.LLM("scripted:bench", db=str(folder / "on.db"), script=["ok"], cycle=True)
    off = wilson_core.LLM(
        "scripted:bench", db=str(folder / "off.db"), script=["ok"], cycle=True, capture=False
    )
    behind = wilson_core.LLM("scripted:bench", db=str(folder / "background.db"), script=["ok"], cycle=True)
    facade_times(on, 200)  # warm up: open the store, fill the blob cache
    facade_times(off, 200)
    background_times(behind, 200)
    raw_conn = raw_table(folder / "raw.db")
    raw, with_capture, without, in_background = [], [], [], []
    cpu = [0.0, 0.0, 0.0, 0.0]  # process CPU seconds: raw, capture on, capture off, background
    for _ in range(rounds):  # small interleaved chunks, so machine load hits all four alike
        for slot, (times, work) in enumerate(
            ((raw, lambda: raw_insert_times(raw_conn, calls)),
             (with_capture, lambda: facade_times(on, calls)),
             (without, lambda: facade_times(off, calls)),
             (in_background, lambda: background_times(behind, calls)))
        ):
            started = time.process_time()
            times += work()
            cpu[slot] += time.process_time() - started
    raw_conn.close()
    us = 1e6
    result = {
        "raw_insert_p50_us": percentile(raw, 0.5) * us,
        "raw_insert_p99_us": percentile(raw, 0.99) * us,
        "capture_on_p50_us": percentile(with_capture, 0.5) * us,
        "capture_on_p99_us": percentile(with_capture, 0.99) * us,
        "capture_off_p50_us": percentile(without, 0.5) * us,
        "capture_off_p99_us": percentile(without, 0.99) * us,
    }
    result["background_p50_us"] = percentile(in_background, 0.5) * us
    result["background_p99_us"] = percentile(in_background, 0.99) * us
    result["background_overhead_p50_us"] = result["background_p50_us"] - result["capture_off_p50_us"]
    result["background_overhead_p99_us"] = result["background_p99_us"] - result["capture_off_p99_us"]
    result["ratio_background_p50_to_raw_p50"] = result["background_overhead_p50_us"] / result["raw_insert_p50_us"]
    result["ratio_background_p99_to_raw_p99"] = result["background_overhead_p99_us"] / result["raw_insert_p99_us"]
    result["overhead_p50_us"] = result["capture_on_p50_us"] - result["capture_off_p50_us"]
    result["overhead_p99_us"] = result["capture_on_p99_us"] - result["capture_off_p99_us"]
    result["ratio_overhead_p99_to_raw_p99"] = result["overhead_p99_us"] / result["raw_insert_p99_us"]
    result["ratio_overhead_p50_to_raw_p50"] = result["overhead_p50_us"] / result["raw_insert_p50_us"]
    n = calls * rounds
    result["raw_insert_cpu_us"] = cpu[0] / n * us
    result["overhead_cpu_us"] = (cpu[1] - cpu[2]) / n * us
    result["ratio_overhead_cpu_to_raw_cpu"] = result["overhead_cpu_us"] / result["raw_insert_cpu_us"]
    result["background_overhead_cpu_us"] = (cpu[3] - cpu[2]) / n * us
    return result


def background_times(llm, calls: int) -> list[float]:
    """:func:`facade_times` with ``WILSON_CAPTURE_WRITE=background``; the queue is written
    (untimed, its CPU counted by the caller) before the next chunk starts."""
    from wilson_core.store import sink

    os.environ["WILSON_CAPTURE_WRITE"] = "background"
    try:
        times = facade_times(llm, calls)
    finally:
        del os.environ["WILSON_CAPTURE_WRITE"]
    sink.flush()
    return times


# -- (d) the floor: Wilson's INSERT alone ---------------------------------------


def bench_insert_floor(folder: Path, calls: int, rounds: int) -> dict:
    """Wilson's INSERT of rows built beforehand (one new run each, as a standalone call makes)
    against the raw INSERT of (a), same pragmas, in interleaved chunks."""
    from wilson_core.records import Interaction, new_id
    from wilson_core.store import open_store
    from wilson_core.store.writing import _INSERT_INTERACTION

    store = open_store(folder / "floor.db")

    def interaction(n: int) -> Interaction:
        return Interaction(run_id=new_id(), sequence_num=1, call_type="agent", provider="scripted", model="bench",
                           messages=messages_for(n), response_content="ok", tools=TOOLS, input_tokens=10,
                           output_tokens=1, total_tokens=11, duration_ms=0.01)

    store.write_interactions([interaction(n) for n in range(3)])  # the blobs, as after a warm-up
    store.close()
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    raw_conn = raw_table(folder / "floor-raw.db")
    wilson, raw = [], []
    for _ in range(rounds):
        raw += raw_insert_times(raw_conn, calls)
        rows = [store.interaction_row(interaction(n))[0] for n in range(calls)]
        for row in rows:
            started = time.perf_counter()
            conn.execute(_INSERT_INTERACTION, row)
            wilson.append(time.perf_counter() - started)
    conn.close()
    raw_conn.close()
    result = {"wilson_insert_p50_us": percentile(wilson, 0.5) * 1e6, "raw_insert_p50_us": percentile(raw, 0.5) * 1e6}
    result["ratio_p50"] = result["wilson_insert_p50_us"] / result["raw_insert_p50_us"]
    return result


# -- (b) concurrent throughput -------------------------------------------------


def _capture_worker(db: str, threads: int, calls: int, start_at: float, out: str, write: str = "sync") -> None:
    import wilson_core
    from wilson_core.store import sink

    os.environ["WILSON_CAPTURE_WRITE"] = write

    llm = wilson_core.LLM("scripted:bench", db=db, script=["ok"], cycle=True)
    llm.chat(messages_for(0), call_type="warmup")
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        mine = []
        for n in range(calls):
            try:
                mine.append(llm.chat(messages_for(n + t)).interaction_id)
            except Exception as exc:  # counted: must stay zero
                errors.append(repr(exc))
        with lock:
            ids.extend(mine)

    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sink.flush()  # what the background writer still holds counts in the time
    elapsed = time.perf_counter() - started
    Path(out).write_text(
        json.dumps({"ids": ids, "errors": errors, "elapsed": elapsed, "failures": llm.capture_failures})
    )


def bench_throughput(folder: Path, calls: int, processes: int = 2, threads: int = 4, write: str = "sync") -> dict:
    import wilson_core

    db = str(folder / f"concurrent-{write}.db")
    wilson_core.open_store(db).close()
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    outs = [str(folder / f"worker-{write}{p}.json") for p in range(processes)]
    procs = [
        ctx.Process(target=_capture_worker, args=(db, threads, calls, start_at, outs[p], write))
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    reports = [json.loads(Path(o).read_text()) for o in outs]
    ids = [i for r in reports for i in r["ids"]]
    wall = max(r["elapsed"] for r in reports)
    store = wilson_core.open_store(db)  # replays anything spooled
    conn = store.connection()
    conn.execute("CREATE TEMP TABLE expected (id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO expected VALUES (?)", [(i,) for i in ids])
    present = conn.execute(
        "SELECT count(*) FROM expected e JOIN interactions i ON i.id = e.id"
    ).fetchone()[0]
    total = processes * threads * calls
    return {
        "interactions": total,
        "returned": len(ids),
        "lost": total - present,
        "app_errors": sum(len(r["errors"]) for r in reports),
        "capture_failures": sum(r["failures"] for r in reports),
        "wall_s": wall,
        "interactions_per_s": len(ids) / wall,
        "integrity": store.integrity_check(),
    }


# -- (c) database size ---------------------------------------------------------


def bench_size(folder: Path, count: int) -> dict:
    from wilson_core.records import Interaction
    from wilson_core.store import open_store

    store = open_store(folder / "size.db")
    naive = sqlite3.connect(folder / "naive.db", isolation_level=None)
    naive.execute("PRAGMA journal_mode = WAL")
    naive.execute(
        "CREATE TABLE llm_interactions (id TEXT PRIMARY KEY, run_id TEXT, sequence_num INTEGER,"
        " call_type TEXT, model TEXT, provider TEXT, system_prompt TEXT, user_prompt TEXT,"
        " messages_json TEXT, response_content TEXT, tool_calls_json TEXT, tools_json TEXT,"
        " input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, duration_ms REAL,"
        " status TEXT, error TEXT, created_at TEXT)"
    )
    tools_json = json.dumps(TOOLS)
    rng = random.Random(7)
    batch: list[Interaction] = []
    naive.execute("BEGIN")
    for n in range(count):
        messages = messages_for(rng.randrange(1_000_000))
        interaction = Interaction(
            run_id=uuid.uuid4().hex, sequence_num=1, call_type="agent", provider="scripted",
            model="bench", messages=messages, response_content=f"You spent {n} euros.",
            tools=TOOLS, input_tokens=600, output_tokens=5, total_tokens=605, duration_ms=812.5,
        )
        batch.append(interaction)
        naive.execute(
            "INSERT INTO llm_interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                interaction.id, interaction.run_id, 1, "agent", "bench", "scripted",
                messages[0]["content"], messages[1]["content"], json.dumps(messages),
                interaction.response_content, None, tools_json, 600, 5, 605, 812.5, "ok", None,
                interaction.created_at,
            ),
        )
        if len(batch) == 1000:
            store.write_interactions(batch)
            batch = []
    if batch:
        store.write_interactions(batch)
    naive.execute("COMMIT")
    for conn in (store.connection(), naive):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    naive.close()
    store.close()
    ours = (folder / "size.db").stat().st_size
    theirs = (folder / "naive.db").stat().st_size
    return {
        "interactions": count,
        "wilson_bytes": ours,
        "naive_bytes": theirs,
        "ratio_wilson_to_naive": ours / theirs,
    }


QUICK = {"calls": 100, "rounds": 30, "concurrent_calls": 250, "size": 10_000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per chunk for (a)")
    parser.add_argument("--rounds", type=int, default=100, help="interleaved chunks for (a)")
    parser.add_argument("--concurrent-calls", type=int, default=2500, help="calls per thread for (b)")
    parser.add_argument("--processes", type=int, default=2, help="processes for (b)")
    parser.add_argument("--threads", type=int, default=4, help="threads per process for (b)")
    parser.add_argument("--size", type=int, default=100_000, help="interactions for (c)")
    parser.add_argument("--only", choices=["overhead", "throughput", "size", "floor"])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:  # smaller sizes unless given explicitly
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    report = Report.from_args("capture", args)
    with tempfile.TemporaryDirectory(prefix="wilson-bench-") as tmp:
        folder = Path(tmp)
        os.environ.pop("WILSON_DB", None)
        if args.only in (None, "overhead"):
            o = bench_overhead(folder, args.calls, args.rounds)
            print("(a) capture overhead per call (scripted provider, 2 KB system prompt, 4 KB tools)")
            print(f"    raw sqlite3 insert   p50 {o['raw_insert_p50_us']:8.1f} us   p99 {o['raw_insert_p99_us']:8.1f} us")
            print(f"    facade capture off   p50 {o['capture_off_p50_us']:8.1f} us   p99 {o['capture_off_p99_us']:8.1f} us")
            print(f"    facade capture on    p50 {o['capture_on_p50_us']:8.1f} us   p99 {o['capture_on_p99_us']:8.1f} us")
            print(f"    overhead (on - off)  p50 {o['overhead_p50_us']:8.1f} us   p99 {o['overhead_p99_us']:8.1f} us")
            print(f"    CPU per call: raw insert {o['raw_insert_cpu_us']:.1f} us, capture overhead "
                  f"{o['overhead_cpu_us']:.1f} us ({o['ratio_overhead_cpu_to_raw_cpu']:.2f}x)")
            print(f"    background writer    p50 {o['background_p50_us']:8.1f} us   p99 "
                  f"{o['background_p99_us']:8.1f} us   overhead p50 {o['background_overhead_p50_us']:.1f} us "
                  f"({o['ratio_background_p50_to_raw_p50']:.2f}x), CPU {o['background_overhead_cpu_us']:.1f} us")
            report.add(
                "capture overhead p99",
                f"facade call with capture on minus off, p99 of {args.calls * args.rounds:,} calls "
                "(2 KB system prompt, 4 KB tool schemas)",
                o["overhead_p99_us"], unit="us", baseline=o["raw_insert_p99_us"],
                baseline_name="raw sqlite3 INSERT p99", target=Target("ratio", "<=", 3),
                peak_rss_mib=peak_rss_mib(),
                note=f"p50: {o['overhead_p50_us']:.0f} us vs {o['raw_insert_p50_us']:.0f} us "
                     f"({o['ratio_overhead_p50_to_raw_p50']:.2f}x); CPU per call {o['overhead_cpu_us']:.0f} us "
                     f"vs {o['raw_insert_cpu_us']:.0f} us ({o['ratio_overhead_cpu_to_raw_cpu']:.2f}x)",
                extra=o,
            )
            report.add(
                "capture overhead p50, background writer",
                "WILSON_CAPTURE_WRITE=background: facade call with capture on minus off, p50 (the writer "
                "thread's work shares the process; its queue is written between chunks)",
                o["background_overhead_p50_us"], unit="us", baseline=o["raw_insert_p50_us"],
                baseline_name="raw sqlite3 INSERT p50", target=Target("ratio", "<", 2),
                note=f"p99: {o['background_overhead_p99_us']:.0f} us vs {o['raw_insert_p99_us']:.0f} us "
                     f"({o['ratio_background_p99_to_raw_p99']:.2f}x); CPU per call incl. the writer "
                     f"{o['background_overhead_cpu_us']:.0f} us",
            )
        if args.only in (None, "floor"):
            f = bench_insert_floor(folder, args.calls, max(10, args.rounds // 2))
            print(f"(d) Wilson's INSERT alone p50 {f['wilson_insert_p50_us']:.1f} us vs raw INSERT "
                  f"{f['raw_insert_p50_us']:.1f} us ({f['ratio_p50']:.2f}x)")
            report.add(
                "capture INSERT floor",
                "Wilson's INSERT statement alone, rows built beforehand (run row by trigger, 3 secondary "
                "indexes), p50",
                f["wilson_insert_p50_us"], unit="us", baseline=f["raw_insert_p50_us"],
                baseline_name="raw sqlite3 INSERT p50", extra=f,
                note="informational: the part of the capture overhead that is SQLite's work",
            )
        if args.only in (None, "throughput"):
            for write in ("sync", "background"):
                t = bench_throughput(folder, args.concurrent_calls, args.processes, args.threads, write)
                print(f"(b) concurrent capture ({write}), {args.threads} threads x {args.processes} processes: "
                      f"{t['interactions_per_s']:,.0f} interactions/s; lost {t['lost']} of {t['interactions']}; "
                      f"app errors {t['app_errors']}; capture failures {t['capture_failures']}; "
                      f"integrity {t['integrity']}")
                report.add(
                    "concurrent capture throughput" + (", background writer" if write == "background" else ""),
                    f"{args.threads} threads x {args.processes} processes into one database, "
                    f"{t['interactions']:,} calls, WILSON_CAPTURE_WRITE={write}",
                    t["interactions_per_s"], unit="interactions/s", target=Target("value", ">=", 5000),
                    passed=t["interactions_per_s"] >= 5000 and t["lost"] == 0 and t["app_errors"] == 0,
                    note=f"lost {t['lost']}, app errors {t['app_errors']}, capture failures "
                         f"{t['capture_failures']}, integrity {t['integrity']}",
                    extra=t,
                )
        if args.only in (None, "size"):
            s = bench_size(folder, args.size)
            print(f"(c) database size for {s['interactions']:,} interactions (3 x 2 KB system prompts, 4 KB tools): "
                  f"wilson {s['wilson_bytes'] / 1e6:,.1f} MB vs naive {s['naive_bytes'] / 1e6:,.1f} MB")
            report.add(
                "database size",
                f"file size for {s['interactions']:,} interactions sharing 3 x 2 KB system prompts "
                "and 4 KB of tool schemas",
                s["wilson_bytes"] / 2**20, unit="MiB", baseline=s["naive_bytes"] / 2**20,
                baseline_name="naive one-row-per-call table", target=Target("ratio", "<=", 0.4),
                peak_rss_mib=peak_rss_mib(), extra=s,
            )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
