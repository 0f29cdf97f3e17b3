"""Run every ``bench_*.py`` script and write one table of ratios, markdown and JSON.

    .venv/bin/python bench/run_all.py                  # full sizes (what ``nox -s bench`` runs)
    .venv/bin/python bench/run_all.py --quick          # every benchmark in a few minutes
    .venv/bin/python bench/run_all.py --only cli --only export

Each script runs as a subprocess with ``--json PATH`` (and ``--quick`` when
given), one after the other (they would disturb each other's timings if run
together).  Its rows are read back from PATH; its output is echoed and kept in
``RESULTS/logs/<script>.log``.  A script that crashes, is killed at
``--timeout`` or exits non-zero without saying why becomes a failed row, and
the others still run.  The table goes to ``RESULTS/bench.md`` and
``RESULTS/bench.json`` (RESULTS is ``bench/results`` unless ``--out``).
Exit status: 0 when every target is met and every script finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import Row, cpu_count, format_number, run_measured  # noqa: E402

#: per-script time limit in seconds, full and quick mode
TIMEOUTS = {False: 4 * 3600, True: 900}


@dataclass(frozen=True)
class ScriptResult:
    script: str
    bench: str
    returncode: int
    seconds: float
    peak_rss_mib: float
    rows: int
    missed: int
    finished: bool
    timed_out: bool
    log: str


def discover(folder: Path, only: list[str]) -> list[Path]:
    scripts = sorted(folder.glob("bench_*.py"))
    if only:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
        unknown = wanted - {bench_name(s) for s in scripts}
        if unknown:
            raise SystemExit(f"no bench script for: {', '.join(sorted(unknown))} "
                             f"(have: {', '.join(bench_name(s) for s in scripts)})")
        scripts = [s for s in scripts if bench_name(s) in wanted]
    return scripts


def bench_name(script: Path) -> str:
    return script.stem.removeprefix("bench_")


def read_rows(path: Path) -> tuple[list[Row], bool]:
    """The rows a script appended, and whether it reached ``Report.finish``."""
    rows, done = [], False
    if not path.exists():
        return rows, done
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if data.get("done"):
            done = True
        elif "name" in data:
            rows.append(Row.from_json(data))
    return rows, done


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def run_script(script: Path, out: Path, quick: bool, timeout: float) -> tuple[ScriptResult, list[Row]]:
    bench = bench_name(script)
    rows_path = out / "rows" / f"{bench}.jsonl"
    log_path = out / "logs" / f"{bench}.log"
    for path in (rows_path, log_path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    command = [sys.executable, str(script), "--json", str(rows_path)] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    print(f"\n=== {script.name}{' --quick' if quick else ''} ===", flush=True)
    result = run_measured(command, capture=True, echo=True, timeout=timeout, env=env, cwd=script.parent.parent)
    log_path.write_text(result.output, encoding="utf-8")
    rows, finished = read_rows(rows_path)
    if result.timed_out:
        rows.append(Row(bench=bench, name=f"{script.name} timed out", measure="the whole script", value=None,
                        passed=False, peak_rss_mib=result.peak_rss_mib,
                        note=f"killed after {result.seconds:.0f} s (limit {timeout:.0f} s); see {log_path}"))
    elif not finished:
        rows.append(Row(bench=bench, name=f"{script.name} crashed", measure="the whole script", value=None,
                        passed=False, peak_rss_mib=result.peak_rss_mib,
                        note=f"exit {result.returncode}: {last_line(result.output)}"))
    elif result.returncode != 0 and not any(row.passed is False for row in rows):
        rows.append(Row(bench=bench, name=f"{script.name} exit status", measure="the whole script", value=None,
                        passed=False, note=f"finished its rows but exited {result.returncode}"))
    # rows that measured no memory of their own get the script's peak (flagged in the table)
    rows = [row if row.peak_rss_mib is not None else _with_script_peak(row, result.peak_rss_mib) for row in rows]
    summary = ScriptResult(
        script=script.name, bench=bench, returncode=result.returncode, seconds=round(result.seconds, 2),
        peak_rss_mib=round(result.peak_rss_mib, 1), rows=len(rows),
        missed=sum(row.passed is False for row in rows), finished=finished, timed_out=result.timed_out,
        log=str(log_path),
    )
    return summary, rows


def _with_script_peak(row: Row, peak: float) -> Row:
    data = row.to_json()
    data["peak_rss_mib"] = peak
    data["extra"] = {**data.get("extra", {}), "peak_rss_is_whole_script": True}
    return Row.from_json(data)


def git_revision(folder: Path) -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return result.stdout.strip() + ("+dirty" if dirty else "") if result.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def meta(quick: bool, started: datetime, seconds: float, load_before: tuple[float, ...]) -> dict:
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "mode": "quick" if quick else "full",
        "cpu_cores": cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git_revision(HERE),
    }


def markdown(info: dict, rows: list[Row], scripts: list[ScriptResult]) -> str:
    missed = sum(row.passed is False for row in rows)
    lines = [
        "# Wilson benchmarks",
        "",
        f"{info['started_at']}, {info['mode']} mode, {info['cpu_cores']} CPU cores, load average "
        f"{info['load_average_at_start'][0]:.2f} at start and {info['load_average_at_end'][0]:.2f} at end, "
        f"Python {info['python']}, git {info['git']}; {info['seconds']:.0f} s in all.",
        "",
        f"**{len(rows)} rows: {sum(row.passed is True for row in rows)} met, {missed} missed, "
        f"{sum(row.passed is None for row in rows)} informational.**"
        + (" Quick mode: small sizes, few repeats; the figures are indicative only." if info["mode"] == "quick"
           else ""),
        "",
        "Every ratio compares with a baseline measured in the same run (see bench/README.md for what each "
        "compares and why that is fair). Peak RSS: the largest process of the measured side, then of the "
        "baseline; † marks the whole bench script's largest process where the row has no figure of its own.",
        "",
        "| Bench | Figure | Value | Baseline | Ratio | Target | Result | Peak RSS MiB |",
        "|---|---|---:|---|---:|---|---|---:|",
    ]
    for row in rows:
        value = f"{format_number(row.value)} {row.unit}".strip() if row.value is not None else "-"
        baseline = (f"{format_number(row.baseline)} {row.unit} ({row.baseline_name})".replace("  ", " ")
                    if row.baseline is not None else "-")
        ratio = f"{row.ratio:.3g}x" if row.ratio is not None else "-"
        result = {True: "met", False: "**MISSED**", None: "info"}[row.passed]
        peak = "-" if row.peak_rss_mib is None else f"{row.peak_rss_mib:,.0f}"
        if row.extra.get("peak_rss_is_whole_script"):
            peak += " †"
        if row.baseline_peak_rss_mib is not None:
            peak += f" / {row.baseline_peak_rss_mib:,.0f}"
        figure = row.name + (f"<br><sub>{row.measure}{'; ' + row.note if row.note else ''}</sub>"
                             if row.measure or row.note else "")
        cells = [row.bench, figure, value, baseline, ratio, row.target or "-", result, peak]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    lines += [
        "",
        "## Scripts",
        "",
        "| Script | Wall s | Peak RSS MiB | Exit | Rows | Missed | Log |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in scripts:
        status = "timed out" if s.timed_out else (str(s.returncode) if s.finished else f"{s.returncode} (crashed)")
        lines.append(f"| {s.script} | {s.seconds:,.1f} | {s.peak_rss_mib:,.0f} | {status} | {s.rows} | {s.missed} "
                     f"| {Path(s.log).name} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this bench (cli, export, ...; repeatable)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--bench-dir", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, help="seconds each script may run (default 4 h; 15 min quick)")
    args = parser.parse_args(argv)
    scripts = discover(args.bench_dir.resolve(), args.only)
    if not scripts:
        raise SystemExit(f"no bench_*.py in {args.bench_dir}")
    timeout = args.timeout or TIMEOUTS[args.quick]
    args.out.mkdir(parents=True, exist_ok=True)
    started, clock, load = datetime.now(timezone.utc), time.perf_counter(), os.getloadavg()
    summaries: list[ScriptResult] = []
    rows: list[Row] = []
    for script in scripts:
        summary, script_rows = run_script(script, args.out, args.quick, timeout)
        summaries.append(summary)
        rows += script_rows
    info = meta(args.quick, started, time.perf_counter() - clock, load)
    passed = not any(row.passed is False for row in rows)
    document = {"meta": info, "passed": passed, "rows": [row.to_json() for row in rows],
                "scripts": [asdict(s) for s in summaries]}
    (args.out / "bench.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    table = markdown(info, rows, summaries)
    (args.out / "bench.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"written {args.out / 'bench.md'} and {args.out / 'bench.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
