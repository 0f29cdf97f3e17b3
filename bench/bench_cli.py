"""CLI start-up: ``wilson --help`` against a bare Python start and against ``import click``.

    .venv/bin/python bench/bench_cli.py [--runs 21] [--quick] [--json PATH]

Each command runs in a fresh process, the three interleaved ``--runs`` times
(after one discarded warm-up round, so every file is in the page cache); the
medians are compared.  ``python -c pass`` is the floor no command line can go
under; ``python -c "import click"`` is the floor of a click application.
Target: ``wilson --help`` under 0.3 s, absolute.

Then ``wilson --help`` once more under ``python -X importtime``: no heavy
module (torch, transformers, peft, trl, datasets, gguf, onnx, onnxruntime,
numpy, ...) may be imported at start-up, plugins' commands included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _report import Report, Target, add_arguments, run_measured

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "gguf", "onnx",
         "onnxruntime", "onnxscript", "numpy", "safetensors", "tokenizers", "starlette", "uvicorn",
         "httpx", "playwright")
TARGET_S = 0.3
CLICK = "python -c 'import click'"


def wilson_command() -> list[str]:
    """The ``wilson`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "wilson"
    if not script.exists():
        raise SystemExit(f"no wilson script beside {sys.executable}: pip install -e . first")
    return [str(script)]


def imported_modules(command: list[str]) -> dict[str, int]:
    """Top-level modules imported by ``command`` (a Python script) -> cumulative microseconds."""
    result = run_measured([sys.executable, "-X", "importtime", *command], capture=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.output[-2000:]}")
    modules: dict[str, int] = {}
    for line in result.output.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if not cumulative.isdigit():  # the header line
            continue
        top = name.split(".")[0]
        modules[top] = max(modules.get(top, 0), int(cumulative))
    return modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs of each command (median)")
    add_arguments(parser)
    args = parser.parse_args()
    runs = 5 if args.quick and args.runs == parser.get_default("runs") else args.runs
    report = Report.from_args("cli", args)

    wilson = wilson_command()
    commands = {
        "wilson --help": [*wilson, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        CLICK: [sys.executable, "-c", "import click"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, float] = {name: 0.0 for name in commands}
    for round_ in range(runs + 1):
        for name, command in commands.items():
            result = run_measured(command, capture=True, timeout=60)
            if result.returncode != 0:
                report.fail(name, "start-up time", f"exit {result.returncode}: {result.output.strip()[-300:]}")
                return report.finish()
            if round_:  # round 0 warms the page cache
                times[name].append(result.seconds)
                cpu[name].append(result.cpu_seconds)
                peaks[name] = max(peaks[name], result.peak_rss_mib)
    median = {name: statistics.median(samples) for name, samples in times.items()}
    median_cpu = {name: statistics.median(samples) for name, samples in cpu.items()}
    for name in commands:
        low, high = min(times[name]), max(times[name])
        print(f"  {name:<26} median {median[name] * 1000:7.1f} ms  (min {low * 1000:.1f}, max {high * 1000:.1f}, "
              f"{runs} runs)  CPU {median_cpu[name] * 1000:.1f} ms  peak RSS {peaks[name]:.0f} MiB")

    report.add(
        "wilson --help vs python -c pass",
        f"median wall time of a fresh process, {runs} interleaved runs",
        median["wilson --help"], unit="s",
        baseline=median["python -c pass"], baseline_name="python -c pass",
        target=Target("value", "<", TARGET_S),
        peak_rss_mib=peaks["wilson --help"], baseline_peak_rss_mib=peaks["python -c pass"],
        note=f"CPU time (user+sys) {median_cpu['wilson --help'] * 1000:.0f} ms vs {median_cpu['python -c pass'] * 1000:.0f} ms; "
             f"fastest run {min(times['wilson --help']) * 1000:.0f} ms",
        extra={"cpu_s": median_cpu["wilson --help"], "baseline_cpu_s": median_cpu["python -c pass"],
               "min_s": min(times["wilson --help"]), "max_s": max(times["wilson --help"])},
    )
    report.add(
        "wilson --help vs import click",
        f"median wall time of a fresh process, {runs} interleaved runs",
        median["wilson --help"], unit="s",
        baseline=median[CLICK], baseline_name=CLICK,
        peak_rss_mib=peaks["wilson --help"], baseline_peak_rss_mib=peaks[CLICK],
        note=f"wilson's own cost over click: {(median['wilson --help'] - median[CLICK]) * 1000:.0f} ms",
    )

    try:
        modules = imported_modules([*wilson, "--help"])
    except RuntimeError as error:
        report.fail("no heavy import at start-up", "python -X importtime wilson --help", str(error)[-300:])
        return report.finish()
    heavy = sorted(name for name in modules if name in HEAVY)
    slowest = sorted(modules.items(), key=lambda item: -item[1])[:8]
    print("  slowest top-level imports of wilson --help: "
          + ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in slowest))
    report.add(
        "no heavy import at start-up",
        f"heavy modules imported by wilson --help ({len(modules)} top-level modules in all)",
        len(heavy), unit="modules", target=Target("value", "==", 0),
        note="imported: " + ", ".join(heavy) if heavy else "none of " + ", ".join(HEAVY[:6]) + ", ...",
        extra={"heavy": heavy, "slowest_ms": {name: us / 1000 for name, us in slowest}},
    )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
