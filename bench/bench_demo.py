"""Demo wall time: ``wilson demo --fast`` and ``wilson demo`` against the issue's time budgets.

    .venv/bin/python bench/bench_demo.py            # --fast, then the default demo
    .venv/bin/python bench/bench_demo.py --quick    # --fast only

Each demo runs as a fresh ``wilson demo --out DIR`` process (DIR a new
temporary folder, removed afterwards unless ``--keep``), exactly as a newcomer
types it.  The baseline is the budget the issue sets on 2 CPU cores: at most
2 minutes for ``--fast`` and 6 minutes for the default demo; the ratio is
measured / budget, so the target is a ratio <= 1.  Peak RSS is that of the
largest process of the demo's process tree.  A demo that fails (non-zero
exit, for instance an option it does not have yet) or runs past 3x its budget
is a failed row with the end of its output.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from _report import Report, Target, add_arguments, cpu_count, run_measured

BUDGETS = {"fast": 120.0, "default": 360.0}
STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]\s*(.+)$")
DONE = re.compile(r"done in ([0-9.]+) s")


def steps(output: str) -> tuple[dict[str, float | None], str]:
    """The demo's progress headers (``[k/n] title``) with the ``done in X s`` that follows each,
    and the last header reached (best effort: an output without them gives nothing)."""
    found: dict[str, float | None] = {}
    last = ""
    for line in output.splitlines():
        header = STEP.match(line)
        if header:
            last = f"[{header.group(1)}/{header.group(2)}] {header.group(3).strip()}"
            found[last] = None
            continue
        done = DONE.search(line)
        if done and last and found[last] is None:
            found[last] = float(done.group(1))
    return found, last


def demo(report: Report, mode: str, keep: bool, timeout_factor: float) -> None:
    wilson = Path(sys.executable).parent / "wilson"
    out = Path(tempfile.mkdtemp(prefix=f"wilson-bench-demo-{mode}-"))
    command = [str(wilson), "demo", "--out", str(out)] + (["--fast"] if mode == "fast" else [])
    shown = "wilson demo" + (" --fast" if mode == "fast" else "") + " --out DIR"
    budget = BUDGETS[mode]
    print(f"  running {' '.join(command)} (budget {budget:.0f} s) ...", flush=True)
    result = run_measured(command, capture=True, echo=True, timeout=budget * timeout_factor)
    measure = f"wall time of {shown} on {cpu_count()} CPU cores"
    timings, last = steps(result.output)
    fields = {"unit": "s", "baseline": budget, "baseline_name": f"budget, {budget / 60:g} min",
              "target": Target("ratio", "<=", 1.0), "peak_rss_mib": result.peak_rss_mib,
              "extra": {"cpu_s": result.cpu_seconds, "steps_s": timings}}
    if timings:
        print("  step times: " + "; ".join(f"{name} {'-' if sec is None else f'{sec:.0f} s'}"
                                           for name, sec in timings.items()), flush=True)
    if result.timed_out:
        report.fail(shown, measure, f"killed after {result.seconds:.0f} s ({timeout_factor:g}x the budget)"
                    + (f" in {last}" if last else ""), **fields)
    elif result.returncode != 0:
        final = [line for line in result.output.strip().splitlines() if line.strip()][-1:] or ["no output"]
        report.fail(shown, measure, f"exit {result.returncode} after {result.seconds:.1f} s: {final[0][:200]}",
                    **fields)
    else:
        report.add(shown, measure, result.seconds, **fields,
                   note=f"CPU time {result.cpu_seconds:.0f} s" + (f"; output kept in {out}" if keep else ""))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["fast", "default", "both"], default=None,
                        help="which demo to time (default: both; fast with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep each demo's output folder")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="kill a demo after this many times its budget")
    add_arguments(parser)
    args = parser.parse_args()
    mode = args.mode or ("fast" if args.quick else "both")
    report = Report.from_args("demo", args)
    for name in ("fast", "default"):
        if mode in (name, "both"):
            demo(report, name, args.keep, args.timeout_factor)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
