"""Machine-readable results shared by the ``bench_*.py`` scripts and ``run_all.py``.

A bench script builds a :class:`Report` from its ``--json PATH`` option and
calls :meth:`Report.add` once per figure it compares with a baseline; every
row is appended to PATH (JSON lines) as soon as it is measured, so a script
that crashes half-way still leaves the rows it measured.  :meth:`Report.finish`
writes the closing ``{"done": true}`` line (its absence is how ``run_all.py``
tells a crash from a finished run) and gives the exit status: 0 when every
target is met, 1 otherwise.

Without ``--json`` the rows are only printed, so each script still runs on its
own exactly as before.

Also here: the peak resident set of this process (:func:`peak_rss_mib`) and
of a child process tree (:func:`run_measured`, through ``os.wait4``), the
nearest-rank :func:`percentile` and :func:`apply_quick` (the ``--quick`` sizes).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    """What a row must satisfy: ``on`` (``"ratio"`` or ``"value"``) ``op`` ``threshold``."""

    on: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.on not in ("ratio", "value") or self.op not in OPERATORS:
            raise ValueError(f"bad target {self}")

    def met(self, value: float | None, ratio: float | None) -> bool:
        subject = ratio if self.on == "ratio" else value
        return subject is not None and OPERATORS[self.op](subject, self.threshold)

    def text(self, unit: str) -> str:
        suffix = "x" if self.on == "ratio" else (f" {unit}" if unit else "")
        return f"{self.on} {self.op} {self.threshold:g}{suffix}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its baseline from the same run, and the target."""

    bench: str
    name: str
    measure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    peak_rss_mib: float | None = None
    baseline_peak_rss_mib: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Row:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick`` and ``--json PATH``: the options every bench script takes."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats: exercises the benchmark in seconds, "
                             "figures are indicative only")
    parser.add_argument("--json", metavar="PATH", dest="json_path",
                        help="append one JSON line per result row to PATH (what bench/run_all.py reads)")


def apply_quick(parser: argparse.ArgumentParser, args: argparse.Namespace, quick: dict) -> None:
    """With ``--quick``: each option named in ``quick`` that was left at its default takes the quick value."""
    if args.quick:
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``: the nearest rank, no interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Report:
    """Collects the rows of one bench script, printing each and appending it to ``path``."""

    def __init__(self, bench: str, path: str | os.PathLike | None = None) -> None:
        self.bench = bench
        self.path = Path(path) if path else None
        self.rows: list[Row] = []

    @classmethod
    def from_args(cls, bench: str, args: argparse.Namespace) -> Report:
        return cls(bench, getattr(args, "json_path", None))

    def add(
        self,
        name: str,
        measure: str,
        value: float | None,
        *,
        unit: str = "",
        baseline: float | None = None,
        baseline_name: str = "",
        ratio: float | None = None,
        target: Target | str | None = None,
        passed: bool | None = None,
        peak_rss_mib: float | None = None,
        baseline_peak_rss_mib: float | None = None,
        note: str = "",
        extra: dict | None = None,
    ) -> Row:
        """Record one figure.  ``ratio`` defaults to value / baseline.  With a :class:`Target`
        the row passes when the target is met and ``passed`` is not False (give ``passed=False``
        for a check beside the figure that failed, e.g. differing counts).  A ``target`` given
        as text describes a check whose outcome ``passed`` must give."""
        if ratio is None and value is not None and baseline:
            ratio = value / baseline
        if isinstance(target, str):
            if passed is None:
                raise ValueError(f"{name}: a target given as text needs passed=True/False")
            target_text = target
        elif target is not None:
            target_text = target.text(unit)
            passed = target.met(value, ratio) and passed is not False
        else:
            target_text = ""
        row = Row(
            bench=self.bench, name=name, measure=measure, value=_num(value), unit=unit,
            baseline=_num(baseline), baseline_name=baseline_name, ratio=_num(ratio),
            target=target_text, passed=passed,
            peak_rss_mib=_num(peak_rss_mib), baseline_peak_rss_mib=_num(baseline_peak_rss_mib),
            note=note, extra=extra or {},
        )
        self.rows.append(row)
        self._append(row.to_json())
        print(f"[{self.bench}] {format_row(row)}", flush=True)
        return row

    def fail(self, name: str, measure: str, note: str, **fields) -> Row:
        """A row for a measurement that could not be made (the command failed, ...)."""
        return self.add(name, measure, None, passed=False, note=note, **fields)

    def finish(self) -> int:
        """Close the report; 0 when no row failed, 1 otherwise."""
        self._append({"done": True})
        failed = [row for row in self.rows if row.passed is False]
        print(f"[{self.bench}] {len(self.rows)} rows, "
              + (f"{len(failed)} MISSED: " + ", ".join(r.name for r in failed) if failed else "all targets met"),
              flush=True)
        return 1 if failed else 0

    def _append(self, data: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(data) + "\n")


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or value == 0:
        return f"{value:.3g}"
    return f"{value:.2e}"


def format_row(row: Row) -> str:
    value = f"{format_number(row.value)} {row.unit}".strip()
    parts = [f"{row.name}: {value}"]
    if row.baseline is not None:
        parts.append(f"baseline {row.baseline_name} {format_number(row.baseline)} {row.unit}".rstrip())
    if row.ratio is not None:
        parts.append(f"ratio {row.ratio:.3g}x")
    if row.target:
        parts.append(f"target {row.target}")
    status = {True: "OK", False: "MISSED", None: "info"}[row.passed]
    return "; ".join(parts) + f"  [{status}]" + (f"  ({row.note})" if row.note else "")


# -- memory --------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class Measured:
    """A finished child process: exit status, wall seconds, the peak RSS of its process tree,
    its output (stdout then stderr) when captured, and the CPU seconds (user + system) of the
    tree."""

    returncode: int
    seconds: float
    peak_rss_mib: float
    timed_out: bool
    output: str = ""
    cpu_seconds: float = 0.0


def run_measured(
    command: list[str],
    *,
    timeout: float | None = None,
    capture: bool = False,
    echo: bool = False,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
) -> Measured:
    """Run ``command`` in its own process group and wait for it with ``os.wait4``.

    The peak RSS is ``ru_maxrss`` of that wait: the largest single process among
    the child and the descendants it waited for (not their sum).  Past ``timeout``
    seconds the whole group is killed and ``timed_out`` is set.  With ``capture``
    stdout and stderr are collected (one stream, read by a thread so the pipe never
    fills up) and with ``echo`` also copied to this process's stdout as they come;
    with neither they go straight to this process's stdout and stderr.
    """
    piped = capture or echo
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE if piped else None,
                            stderr=subprocess.STDOUT if piped else None, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    chunks: list[bytes] = []

    def read() -> None:
        for line in proc.stdout:
            chunks.append(line)
            if echo:
                sys.stdout.write("    " + line.decode("utf-8", "replace"))
                sys.stdout.flush()

    reader = threading.Thread(target=read, daemon=True) if piped else None
    if reader:
        reader.start()
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        kill_group(proc.pid)

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    if timer:
        timer.daemon = True
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)  # blocking: no polling delay in the timing
    seconds = time.perf_counter() - started
    if timer:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
    if reader:
        reader.join(timeout=10)  # a leftover grandchild may hold the pipe open: do not hang on it
        proc.stdout.close()
    return Measured(proc.returncode, seconds, usage.ru_maxrss / 1024, fired.is_set(),
                    b"".join(chunks).decode("utf-8", "replace"), usage.ru_utime + usage.ru_stime)


def kill_group(pid: int) -> None:
    """Kill the process group of a child started with ``start_new_session=True``."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit("a helper module: run bench/run_all.py or a bench/bench_*.py script")
