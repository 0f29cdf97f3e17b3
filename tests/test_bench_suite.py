"""``bench/run_all.py``: every bench script's rows in one table, crashes shown as failed rows.

The aggregator runs here on small bench scripts written into a temporary folder
(they use the real ``bench/_report.py``), and once on the real ``bench_cli.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "bench" / "run_all.py"

MET = """
    import argparse, sys
    from _report import Report, Target, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    report = Report.from_args("met", args)
    report.add("fast path", "ms per call", 2.0, unit="ms", baseline=4.0, baseline_name="slow path",
               target=Target("ratio", "<=", 1.0), peak_rss_mib=12.5, baseline_peak_rss_mib=10.0,
               note=f"quick={args.quick}")
    report.add("informational", "a figure without a target", 7.0, unit="items")
    sys.exit(report.finish())
"""

MISSED = """
    import argparse, sys
    from _report import Report, Target, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    report = Report.from_args("missed", parser.parse_args())
    report.add("too slow", "s per run", 0.5, unit="s", target=Target("value", "<", 0.3))
    sys.exit(report.finish())
"""

CRASHED = """
    import argparse
    from _report import Report, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    report = Report.from_args("crashed", parser.parse_args())
    report.add("measured before the crash", "rows", 3.0)
    raise RuntimeError("the database vanished")
"""


def write_benches(folder: Path, **scripts: str) -> Path:
    folder.mkdir()
    for name, code in scripts.items():
        (folder / f"bench_{name}.py").write_text(textwrap.dedent(code))
    return folder


def run_all(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_every_script_lands_in_one_table_and_a_crash_is_a_failed_row(tmp_path):
    benches = write_benches(tmp_path / "bench", met=MET, missed=MISSED, crashed=CRASHED)
    out = tmp_path / "results"

    result = run_all("--bench-dir", str(benches), "--out", str(out), "--quick")

    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads((out / "bench.json").read_text())
    rows = {(row["bench"], row["name"]): row for row in document["rows"]}
    assert list(rows) == [
        ("crashed", "measured before the crash"),
        ("crashed", "bench_crashed.py crashed"),
        ("met", "fast path"),
        ("met", "informational"),
        ("missed", "too slow"),
    ]
    fast = rows["met", "fast path"]
    assert (fast["value"], fast["baseline"], fast["ratio"], fast["passed"]) == (2.0, 4.0, 0.5, True)
    assert fast["target"] == "ratio <= 1x"
    assert (fast["peak_rss_mib"], fast["baseline_peak_rss_mib"]) == (12.5, 10.0)
    assert fast["note"] == "quick=True"  # --quick reached the script
    assert rows["met", "informational"]["passed"] is None
    assert rows["missed", "too slow"]["passed"] is False
    crash = rows["crashed", "bench_crashed.py crashed"]
    assert crash["passed"] is False
    assert "exit 1" in crash["note"] and "the database vanished" in crash["note"]
    assert rows["crashed", "measured before the crash"]["passed"] is None  # kept, not hidden
    # a row without a memory figure of its own gets the script's peak, flagged
    informational = rows["met", "informational"]
    assert informational["peak_rss_mib"] > 1 and informational["extra"]["peak_rss_is_whole_script"]
    assert document["passed"] is False and document["meta"]["mode"] == "quick"
    scripts = {s["script"]: s for s in document["scripts"]}
    assert scripts["bench_crashed.py"]["finished"] is False
    assert scripts["bench_met.py"]["returncode"] == 0 and scripts["bench_missed.py"]["returncode"] == 1

    table = (out / "bench.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| Bench | Figure | Value | Baseline | Ratio | Target | Result | Peak RSS MiB |")
    fast_line = next(line for line in lines if "fast path" in line)
    assert "| 2 ms | 4 ms (slow path) | 0.5x | ratio <= 1x | met | 12 / 10 |" in fast_line
    assert "**MISSED**" in next(line for line in lines if "bench_crashed.py crashed" in line)
    assert "**MISSED**" in next(line for line in lines if "too slow" in line)
    assert "5 rows: 1 met, 2 missed, 2 informational." in table
    assert (out / "logs" / "crashed.log").read_text().count("the database vanished") >= 1


def test_the_suite_passes_when_every_target_is_met(tmp_path):
    benches = write_benches(tmp_path / "bench", met=MET)

    result = run_all("--bench-dir", str(benches), "--out", str(tmp_path / "results"))

    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert document["passed"] is True and document["meta"]["mode"] == "full"
    assert document["rows"][0]["note"] == "quick=False"


def test_a_script_past_its_time_limit_is_killed_and_shown(tmp_path):
    benches = write_benches(tmp_path / "bench", slow="import time\ntime.sleep(60)\n")

    result = run_all("--bench-dir", str(benches), "--out", str(tmp_path / "results"), "--timeout", "1")

    assert result.returncode == 1
    [row] = json.loads((tmp_path / "results" / "bench.json").read_text())["rows"]
    assert row["name"] == "bench_slow.py timed out" and row["passed"] is False


def test_the_real_cli_benchmark_reports_its_three_rows(tmp_path):
    result = run_all("--only", "cli", "--quick", "--out", str(tmp_path / "results"))

    document = json.loads((tmp_path / "results" / "bench.json").read_text())
    rows = {row["name"]: row for row in document["rows"]}
    assert list(rows) == ["wilson --help vs python -c pass", "wilson --help vs import click",
                          "no heavy import at start-up"], result.stdout + result.stderr
    startup = rows["wilson --help vs python -c pass"]
    assert startup["value"] > startup["baseline"] > 0 and startup["target"] == "value < 0.3 s"
    assert startup["ratio"] == startup["value"] / startup["baseline"]
    assert rows["no heavy import at start-up"]["passed"] is True, rows["no heavy import at start-up"]["note"]
