"""Export speed and memory: Wilson's sft export vs a raw sqlite3 + json loop over the same rows.

    python bench/bench_export.py              # 1M interactions (plus a 100k database for RSS)
    python bench/bench_export.py --rows 200000
    python bench/bench_export.py --quick --json rows.jsonl   # 50k and 10k rows, one run each

Builds the databases with ``executemany`` (a shared system prompt and tool
schemas as blobs, one human rating per interaction, a tool call on every 5th
answer), then runs each export in a fresh child process and reports rows/s,
the ratio (Wilson / raw; the target is >= 0.5) and the child's peak RSS, at
the small and the full size: streaming means the peak does not grow with rows.

Then, on the full-size database, ``count_records`` (what ``wilson export
--count`` and the dashboard's stat cards use) against counting by running the
pipeline without writing (the baseline), for several formats and filters:
both must give the same number.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import Report, Target, add_arguments, apply_quick

SYSTEM = "You are Wilson, a personal-finance assistant. " * 20
TOOLS = [
    {"type": "function", "function": {"name": "search_transactions", "parameters": {
        "type": "object", "properties": {"category": {"type": "string"}, "month": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_balance", "parameters": {
        "type": "object", "properties": {"account": {"type": "string"}}}}},
]


def build(path: Path, rows: int) -> float:
    """A Wilson database with ``rows`` interactions (10 per run); returns the seconds it took."""
    from wilson_core import open_store
    from wilson_core.store.encoding import _dumps, sha256

    start = time.perf_counter()
    open_store(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    system_hash, tools_json = sha256(SYSTEM), _dumps(TOOLS)
    tools_hash = sha256(tools_json)
    con.execute("INSERT OR IGNORE INTO blobs VALUES (?, 'system_prompt', ?)", (system_hash, SYSTEM))
    con.execute("INSERT OR IGNORE INTO blobs VALUES (?, 'tools', ?)", (tools_hash, tools_json))
    runs = ((f"run{r:08d}", "agent", f"2026-11-01T00:00:{r:08d}") for r in range(rows // 10 + 1))
    con.executemany("INSERT INTO runs (id, call_type, started_at) VALUES (?, ?, ?)", runs)
    # the capture trigger that keeps runs in step is not needed for a bulk load
    triggers = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    saved = [con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0] for t in triggers]
    for name in triggers:
        con.execute(f"DROP TRIGGER {name}")

    def interactions():
        for n in range(rows):
            messages = _dumps([{"role": "user", "content": f"Categorise transaction {n}: COFFEE SHOP {n % 97} 4.50 EUR"}])
            calls = _dumps([{"id": f"c{n}", "name": "search_transactions", "args": {"category": "coffee", "month": "2026-10"}}]) if n % 5 == 0 else None
            yield (f"i{n:09d}", f"run{n // 10:08d}", n % 10, "agent", "gpt-4o-mini", "openai", system_hash,
                   messages, None if calls else f"Dining, because transaction {n} is a coffee shop.", calls,
                   tools_hash, f"2026-11-01T00:00:00.{n:09d}", f"ctx{n}")

    con.executemany(
        "INSERT INTO interactions (id, run_id, sequence_num, call_type, model, provider, system_hash, messages_json,"
        " response_content, tool_calls_json, tools_hash, status, created_at, context_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?, ?)",
        interactions(),
    )
    con.executemany(
        "INSERT INTO annotations (id, interaction_id, rating, source, annotator, status, version, created_at)"
        " VALUES (?, ?, ?, 'human', 'local', 'accepted', 1, '2026-11-02')",
        ((f"a{n:09d}", f"i{n:09d}", 1 + n % 5) for n in range(rows)),
    )
    for sql in saved:
        con.execute(sql)
    con.commit()
    con.close()
    return time.perf_counter() - start


def raw_export(db: Path, out: Path) -> int:
    """The baseline: one join, json.loads, build the same line shape, json.dumps, write."""
    con = sqlite3.connect(db)
    cursor = con.execute(
        "SELECT s.content, i.messages_json, i.response_content, i.tool_calls_json, t.content, a.rating "
        "FROM interactions i LEFT JOIN blobs s ON s.hash = i.system_hash "
        "LEFT JOIN blobs t ON t.hash = i.tools_hash LEFT JOIN annotations a ON a.interaction_id = i.id "
        "WHERE i.status = 'ok' ORDER BY i.created_at, i.rowid"
    )
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for system, messages_json, content, calls_json, tools_json, _rating in cursor:
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
            count += 1
    return count


def wilson_export(db: Path, out: Path) -> int:
    from wilson_core import open_store
    from wilson_core.exporting import ExportOptions, run_export

    manifest = run_export(open_store(db), ExportOptions(format="sft"), out)
    return manifest["counts"]["total"]


def child(kind: str, db: str, out: str) -> None:
    start = time.perf_counter()
    lines = (raw_export if kind == "raw" else wilson_export)(Path(db), Path(out))
    seconds = time.perf_counter() - start
    print(json.dumps({"lines": lines, "seconds": seconds, "peak_rss_mib": round(peak_rss_kib() / 1024, 1)}))


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(kind: str, db: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", kind, str(db), str(out)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


COUNT_CASES = {
    "sft": {"format": "sft"},
    "sft --min-rating 4": {"format": "sft", "min_rating": 4},
    "dpo": {"format": "dpo"},
    "kto": {"format": "kto"},
    "sft --granularity run --min-rating 2": {"format": "sft", "granularity": "run", "min_rating": 2},
}


def bench_counts(report: Report, db: Path, repeat: int) -> None:
    """count_records against the pipeline count, best of ``repeat`` each, alternated."""
    from wilson_core import open_store
    from wilson_core.exporting import ExportOptions, count_records
    from wilson_core.exporting.pipeline import count_by_pipeline

    store = open_store(db)
    print("count_records (SQL where examples cannot fail) vs counting through the pipeline:")
    for name, options in COUNT_CASES.items():
        opts = ExportOptions(**options)
        fast, slow = [], []
        for _ in range(repeat):
            for fn, times in ((count_by_pipeline, slow), (count_records, fast)):
                started = time.perf_counter()
                result = fn(store, opts)
                times.append((time.perf_counter() - started, result))
        (fast_s, counted), (slow_s, expected) = min(fast), min(slow)
        same = counted == expected
        report.add(
            f"export count: {name}",
            f"count_records on {store.count('interactions'):,} interactions, best of {repeat}; "
            "must equal the pipeline's count",
            fast_s * 1000, unit="ms", baseline=slow_s * 1000, baseline_name="counting through the pipeline",
            target=Target("ratio", "<=", 1.0), passed=same and fast_s <= slow_s,
            note=f"{counted:,} lines" + ("" if same else f" but the pipeline counts {expected:,}"),
        )
    store.close()


QUICK = {"rows": 50_000, "small": 10_000, "repeat": 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="rows of the second database (RSS)")
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each export (best is reported)")
    parser.add_argument("--counts-only", action="store_true", help="only the count comparison")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    apply_quick(parser, args, QUICK)  # smaller sizes unless given explicitly
    report = Report.from_args("export", args)
    work = Path(args.dir or tempfile.mkdtemp(prefix="wilson-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for rows in sorted({min(args.small, args.rows), args.rows}):
        db = work / f"bench-{rows}.db"
        if not db.exists():
            print(f"building {rows:,} interactions ... ", end="", flush=True)
            print(f"{build(db, rows):.1f} s")
        if args.counts_only:
            continue
        # alternate the two, best of `--repeat` each: the machine is shared, noise only slows a run down
        raws, ourss = [], []
        for _ in range(args.repeat):
            raws.append(measure("raw", db, work / f"raw-{rows}.jsonl"))
            ourss.append(measure("wilson", db, work / f"wilson-{rows}.jsonl"))
        raw = min(raws, key=lambda r: r["seconds"])
        ours = min(ourss, key=lambda r: r["seconds"])
        ours["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ourss)
        raw["peak_rss_mib"] = max(r["peak_rss_mib"] for r in raws)
        results[rows] = (raw, ours)
        complete = raw["lines"] == ours["lines"] == rows
        report.add(
            f"sft export rate, {rows:,} rows",
            f"wilson export sft (fresh process, best of {args.repeat}) against a raw sqlite3 + json loop "
            "writing the same lines",
            rows / ours["seconds"], unit="rows/s", baseline=rows / raw["seconds"],
            baseline_name="raw sqlite3 + json",
            # the target is set for the full size; the smaller export is dominated by start-up
            target=Target("ratio", ">=", 0.5) if rows == args.rows else None,
            passed=None if complete else False,
            peak_rss_mib=ours["peak_rss_mib"], baseline_peak_rss_mib=raw["peak_rss_mib"],
            note="" if complete else f"line counts differ: raw {raw['lines']:,}, wilson {ours['lines']:,}",
        )
    if len(results) == 2:
        (small_rows, (_, small)), (large_rows, (_, large)) = sorted(results.items())
        report.add(
            "export peak RSS does not grow with rows",
            f"wilson export's peak RSS at {large_rows:,} rows against {small_rows:,} rows "
            f"({large_rows / small_rows:.0f}x the rows)",
            large["peak_rss_mib"], unit="MiB", baseline=small["peak_rss_mib"],
            baseline_name=f"peak at {small_rows:,} rows", target=Target("ratio", "<=", 1.1),
            peak_rss_mib=large["peak_rss_mib"],
        )
    bench_counts(report, work / f"bench-{args.rows}.db", args.repeat)
    for path in work.glob("*.jsonl*"):
        path.unlink()
    if not args.dir:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
