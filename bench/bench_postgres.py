"""PostgreSQL store: capture from many writers and export, each against a raw psycopg baseline.

Run with ``python bench/bench_postgres.py [--quick] [--json PATH]`` (or ``nox -s bench``).  A
throwaway PostgreSQL server is started for the run (tests/postgres_server.py: Debian's
``postgresql`` package, ``initdb`` + ``pg_ctl`` in a temporary folder).

(a) capture: P processes x T threads each capture N calls through Wilson's capture sink into
    one database; the baseline is a raw psycopg loop inserting the same rows (the rows
    Wilson builds, prepared beforehand) over the same connections (one per process, its
    threads taking turns).  Rates in calls/s, ratio Wilson / raw, target >= 0.5, 0 lost.
(b) export: ``wilson export sft`` of R interactions from PostgreSQL against a raw loop over
    a server-side cursor that reads the same rows and writes the same line shape (messages
    and tools) per row, as bench_export.py's SQLite baseline does; rate
    ratio (raw time / Wilson time) target >= 0.5.  Peak RSS of the export is reported for
    R and R/10 interactions: flat memory means within 1.5x.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _report import Report, Target, add_arguments, run_measured  # noqa: E402

SYSTEM = "You are Wilson, a careful personal-finance assistant. " * 20
TOOLS = [{"type": "function", "function": {"name": f"tool_{n}", "description": "d" * 200,
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
         for n in range(8)]
QUICK = {"calls": 150, "rows": 20_000}


def _interactions(tag: str, count: int) -> list:
    from wilson_core.records import Interaction

    return [
        Interaction(run_id=f"{tag}-run-{n // 10}", sequence_num=n % 10, call_type="bench", provider="scripted",
                    model="m", messages=[{"role": "system", "content": SYSTEM},
                                         {"role": "user", "content": f"{tag} question {n}"}],
                    response_content=f"answer {n}", tools=TOOLS, input_tokens=10, output_tokens=5)
        for n in range(count)
    ]


def _wilson_process(url: str, tag: str, threads: int, calls: int, start: float, out: multiprocessing.Queue) -> None:
    from wilson_core.store import sink

    work = [_interactions(f"{tag}-t{t}", calls) for t in range(threads)]
    sink.store_for(url)  # open (and connect) before the clock starts, as an app does at start-up

    def run(items: list) -> None:
        for interaction in items:
            sink.wilson_capture_interaction(interaction=interaction, db_path=url)

    while time.time() < start:
        time.sleep(0.001)
    began = time.perf_counter()
    pool = [threading.Thread(target=run, args=(items,)) for items in work]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(time.perf_counter() - began)


def _raw_process(url: str, tag: str, threads: int, calls: int, start: float, out: multiprocessing.Queue) -> None:
    import psycopg

    from wilson_core.store import open_store
    from wilson_core.store.postgres import translate
    from wilson_core.store.writing import _INSERT_BLOB, _INSERT_INTERACTION

    store = open_store(url)
    work = []
    blobs = {}
    for t in range(threads):
        rows = []
        for interaction in _interactions(f"{tag}-t{t}", calls):
            row, needed = store.interaction_row(interaction)
            rows.append(row)
            for kind, content, digest in needed:
                blobs[digest] = (digest, kind, content)
        work.append(rows)
    store.close()
    conn = psycopg.connect(url, autocommit=True)
    for blob in blobs.values():
        conn.execute(translate(_INSERT_BLOB), blob)
    sql = translate(_INSERT_INTERACTION)
    lock = threading.Lock()

    def run(rows: list) -> None:
        for row in rows:
            with lock:
                conn.execute(sql, row)

    while time.time() < start:
        time.sleep(0.001)
    began = time.perf_counter()
    pool = [threading.Thread(target=run, args=(rows,)) for rows in work]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(time.perf_counter() - began)


def capture_rate(url: str, target, processes: int, threads: int, calls: int, tag: str) -> tuple[float, int]:
    """Calls per second over all processes (first start to last end), and the rows stored."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start = time.time() + 3.0  # every process ready (imports, rows built) before the clock starts
    procs = [context.Process(target=target, args=(url, f"{tag}-p{p}", threads, calls, start, queue))
             for p in range(processes)]
    for p in procs:
        p.start()
    seconds = [queue.get(timeout=1200) for _ in procs]
    for p in procs:
        p.join()
    import psycopg

    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM interactions WHERE call_type = 'bench'").fetchone()[0]
    return processes * threads * calls / max(seconds), stored


def bench_capture(server, report: Report, processes: int, threads: int, calls: int) -> None:
    from wilson_core.store import open_store

    rates: dict[str, list[float]] = {"wilson": [], "raw": []}
    lost = 0
    for attempt in range(2):  # alternated, the better of two for each
        for side, target in (("raw", _raw_process), ("wilson", _wilson_process)):
            url = server.new_database()
            open_store(url).close()
            rate, stored = capture_rate(url, target, processes, threads, calls, f"{side}{attempt}")
            rates[side].append(rate)
            if side == "wilson":
                lost += processes * threads * calls - stored
    wilson, raw = max(rates["wilson"]), max(rates["raw"])
    report.add(
        "capture into PostgreSQL",
        f"{processes} processes x {threads} threads, {processes * threads * calls:,} calls through the "
        "capture sink (group commit), 1 KB system prompt + 2 KB tools",
        wilson, unit="calls/s", baseline=raw,
        baseline_name="raw psycopg INSERT loop, same rows, one connection per process",
        target=Target("ratio", ">=", 0.5), passed=lost == 0,
        note=f"lost {lost}; rates {', '.join(f'{r:,.0f}' for r in rates['wilson'])} vs "
             f"{', '.join(f'{r:,.0f}' for r in rates['raw'])}",
        extra={"wilson": rates["wilson"], "raw": rates["raw"], "lost": lost},
    )


#: rows written through Wilson's own write path; the rest are copies the server makes of them.
SEED_ROWS = 20_000

#: each copy gets its own id, run (ten calls each), user prompt and context hash, as a capture would.
COPY_ROWS = """
WITH s AS (SELECT *, row_number() OVER (ORDER BY rowid) - 1 AS k FROM interactions),
     c AS (SELECT s.*, g.n, replace(s.messages_json, s.user_prompt, s.user_prompt || ' #' || g.n) AS copy_json
           FROM generate_series(0, %(copies)s - 1) AS g(n) JOIN s ON s.k = g.n %% %(seed)s)
INSERT INTO interactions (
    id, run_id, sequence_num, call_type, model, provider, system_hash, user_prompt, messages_json,
    response_content, tool_calls_json, tools_hash, params_json, input_tokens, output_tokens, total_tokens,
    duration_ms, status, error, created_at, context_hash, ttft_ms)
SELECT md5(c.id || ':' || c.n), 'copy-run-' || (c.n / 10), c.n %% 10, c.call_type, c.model, c.provider,
       c.system_hash, c.user_prompt || ' #' || c.n, c.copy_json, c.response_content, c.tool_calls_json,
       c.tools_hash, c.params_json, c.input_tokens, c.output_tokens, c.total_tokens, c.duration_ms, c.status,
       c.error, c.created_at,
       encode(sha256(convert_to(coalesce(c.system_hash, '') || '|' || c.copy_json, 'UTF8')), 'hex'), c.ttft_ms
FROM c ORDER BY c.n
"""


def populate(url: str, rows: int) -> None:
    """``rows`` interactions: the first :data:`SEED_ROWS` through Wilson's write path, then copies.

    Writing a million rows through the Python write path takes over an hour on a
    loaded 2-core machine; the server copies the seed rows in minutes instead.
    """
    import psycopg

    from wilson_core.store import open_store
    from wilson_core.store.writing import Batch

    store = open_store(url)
    seed = min(rows, SEED_ROWS)
    for start in range(0, seed, 5000):
        items = _interactions(f"e{start}", min(5000, seed - start))
        store.write_batch(Batch(interactions=items))
    store.close()
    if rows > seed:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(COPY_ROWS, {"copies": rows - seed, "seed": seed})
            conn.execute("VACUUM ANALYZE interactions")
            conn.execute("VACUUM ANALYZE runs")


RAW_EXPORT = r'''
import json, sys, psycopg
url, out = sys.argv[1], sys.argv[2]
with psycopg.connect(url) as conn, open(out, "w", encoding="utf-8") as handle:
    with conn.cursor(name="raw") as cur:
        cur.itersize = 2000
        cur.execute("SELECT s.content, i.messages_json, i.response_content, i.tool_calls_json, t.content, a.rating "
                    "FROM interactions i LEFT JOIN blobs s ON s.hash = i.system_hash "
                    "LEFT JOIN blobs t ON t.hash = i.tools_hash LEFT JOIN annotations a ON a.interaction_id = i.id "
                    "WHERE i.status = 'ok' ORDER BY i.created_at, i.rowid")
        for system, messages_json, content, calls_json, tools_json, _rating in cur:
            messages = json.loads(messages_json)
            if system is not None:
                messages.insert(0, {"role": "system", "content": system})
            answer = {"role": "assistant", "content": content or ""}
            if calls_json:
                answer["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                    for c in json.loads(calls_json)
                ]
            messages.append(answer)
            line = {"messages": messages, "tools": json.loads(tools_json) if tools_json else []}
            handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
'''


def bench_export(server, report: Report, rows: int, folder: Path, repeats: int = 2) -> None:
    results = {}
    for size in (rows // 10, rows):
        url = server.new_database()
        populate(url, size)
        wilson_out, raw_out = folder / f"w{size}.jsonl", folder / f"r{size}.jsonl"
        script = folder / "raw_export.py"
        script.write_text(RAW_EXPORT, encoding="utf-8")
        env = {**os.environ, "WILSON_DB": url}
        best = {"wilson": None, "raw": None}
        for _ in range(repeats):
            raw = run_measured([sys.executable, str(script), url, str(raw_out)])
            wil = run_measured([sys.executable, "-m", "wilson_core.cli", "export", "sft", "--out", str(wilson_out)],
                               env=env, capture=True)
            if wil.returncode != 0:
                report.fail("export from PostgreSQL", f"{size:,} interactions", wil.output[-300:])
                return
            for name, measured in (("wilson", wil), ("raw", raw)):
                if best[name] is None or measured.seconds < best[name].seconds:
                    best[name] = measured
        lines = sum(1 for _ in wilson_out.open(encoding="utf-8"))
        results[size] = (best["wilson"], best["raw"], lines)
    big_w, big_r, lines = results[rows]
    small_w = results[rows // 10][0]
    report.add(
        "export from PostgreSQL",
        f"wilson export sft of {rows:,} interactions (server-side cursor), wall time",
        big_w.seconds, unit="s", baseline=big_r.seconds,
        baseline_name="raw psycopg server-side cursor + json loop",
        ratio=big_r.seconds / big_w.seconds, target=Target("ratio", ">=", 0.5),
        passed=lines == rows, peak_rss_mib=big_w.peak_rss_mib, baseline_peak_rss_mib=big_r.peak_rss_mib,
        note=f"ratio = raw time / Wilson time (rate ratio); {lines:,} lines",
    )
    report.add(
        "export from PostgreSQL: flat memory",
        f"peak RSS exporting {rows:,} vs {rows // 10:,} interactions",
        big_w.peak_rss_mib, unit="MiB", baseline=small_w.peak_rss_mib,
        baseline_name=f"the same export of {rows // 10:,}", target=Target("ratio", "<=", 1.5),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per thread for (a)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1_000_000, help="interactions for (b)")
    parser.add_argument("--only", choices=["capture", "export"])
    parser.add_argument("--repeats", type=int, default=2, help="export runs of each side per size (the best counts)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    report = Report.from_args("postgres", args)
    try:
        import psycopg  # noqa: F401
        from postgres_server import PostgresServer
    except ImportError as exc:
        report.fail("postgres", "PostgreSQL benchmarks", f"cannot run: {exc} (pip install 'wilson-core[postgres]')")
        return report.finish()
    os.environ.pop("WILSON_DB", None)
    with tempfile.TemporaryDirectory(prefix="wilson-bench-pg-") as tmp:
        folder = Path(tmp)
        server_root = Path(tempfile.mkdtemp(prefix="wilson-bench-pgdata-"))  # its own: PostgreSQL's user owns it
        try:
            server = PostgresServer(server_root)
        except Exception as exc:
            report.fail("postgres", "PostgreSQL benchmarks", f"cannot start PostgreSQL: {exc}")
            return report.finish()
        try:
            os.environ["WILSON_SPOOL_DIR"] = str(folder / "spool")
            if args.only in (None, "capture"):
                bench_capture(server, report, args.processes, args.threads, args.calls)
            if args.only in (None, "export"):
                bench_export(server, report, args.rows, folder, args.repeats)
        finally:
            server.stop("immediate")
            import shutil

            shutil.rmtree(server_root, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
