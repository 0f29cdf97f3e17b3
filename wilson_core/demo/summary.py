"""The demo's closing summary: what was captured, labelled, exported, learnt and deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Accuracy the tuned model must reach on a SmolLM2 base, per held-out set; it must
#: also reach the cloud teacher's own accuracy on the same set.
TARGETS = {"seen-merchants": 0.90, "new-merchants": 0.70}
SET_NAMES = {"seen-merchants": "merchants seen in training", "new-merchants": "merchants never seen"}

#: The tuned model's exact match over seeds 0-4 (min, median, max, the enum enforced), as
#: measured with the default settings of each mode, ``--fast`` or not (docs/tutorial.md);
#: the summary quotes it beside one run's figures when the run used those settings.
MEASURED_SPREAD = {
    False: {"seen-merchants": (0.95, 1.00, 1.00), "new-merchants": (0.85, 0.90, 0.975)},
    True: {"seen-merchants": (0.208, 0.333, 0.542), "new-merchants": (0.042, 0.167, 0.25)},
}
#: The settings that decide what the model learns (the seed only picks one of the five runs).
_MEASURED_WITH = ("base", "count", "steps", "lr", "heldout", "dpo")


def misses(report: dict[str, Any]) -> list[str]:
    """Every target the tuned model missed, in words (empty when all were met).

    On the default base: each set's target of :data:`TARGETS` and the teacher's own
    accuracy.  With ``--fast`` (a tiny model built on the spot, no absolute target):
    beating the base on merchants seen in training, as the app runs it (its category enum
    enforced).
    """
    found = []
    fast = bool(report.get("config", {}).get("fast"))
    for name, by_model in report.get("eval", {}).items():
        tuned = by_model.get("tuned")
        label = SET_NAMES.get(name, name)
        if tuned is None:
            found.append(f"{label}: no score for the tuned model")
            continue
        for what, bar, strict in _targets(name, by_model, fast):
            if tuned < bar or (strict and tuned <= bar):
                found.append(f"{label}: tuned {tuned:.2f} {'<=' if strict else '<'} {what} {bar:.2f}")
    return found


def _targets(name: str, by_model: dict[str, Any], fast: bool) -> list[tuple[str, float, bool]]:
    """(what, bar, must be strictly above) for one held-out set."""
    if fast:
        base = by_model.get("base")
        return [("base", base, True)] if name == "seen-merchants" and base is not None else []
    bars = [("target", TARGETS[name], False)] if name in TARGETS else []
    teacher = by_model.get("teacher")
    return bars + ([("teacher", teacher, False)] if teacher is not None else [])


def eval_scores(path: Path, teacher: dict[str, float | None] | None = None) -> dict[str, dict[str, Any]]:
    """``{held-out set: {"teacher", "base", "tuned", "unconstrained": {"base", "tuned"}}}`` (exact match).

    ``base`` and ``tuned`` are scored as the app runs them, with its structured-output
    constraint on (when the held-out lines carry one); ``unconstrained`` is free decoding;
    ``teacher`` is the cloud teacher's own accuracy on the set.
    """
    if not path.exists():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    free = report.get("subsets") or {"overall": report}
    constrained = (report.get("constrained") or {}).get("subsets") or {}
    teacher = teacher or {}
    scores: dict[str, dict[str, Any]] = {}
    for name, entry in free.items():
        unconstrained = {label: m.get("exact_match") for label, m in entry["models"].items()}
        chosen = constrained.get(name, {}).get("models")
        main = {label: m.get("exact_match") for label, m in chosen.items()} if chosen else unconstrained
        scores[name] = {"teacher": teacher.get(name), **main}
        if chosen:
            scores[name]["unconstrained"] = unconstrained
    return scores


def export_counts(folder: Path) -> dict[str, dict[str, int]]:
    """Lines written per export file, from each manifest."""
    counts = {}
    for manifest in sorted(folder.glob("*.manifest.json")):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        counts[manifest.name.removesuffix(".jsonl.manifest.json")] = {
            split: int(entry.get("lines", 0)) for split, entry in data.get("files", {}).items()
        }
    return counts


def deploy_record(folder: Path) -> dict[str, Any]:
    """What ``wilson deploy`` recorded: the provider string and each verification check."""
    data = json.loads((folder / "wilson-deploy.json").read_text(encoding="utf-8"))
    return {
        "provider": data.get("provider"),
        "passed": bool(data.get("passed")),
        "checks": {c["name"]: bool(c["passed"]) for c in data.get("checks", [])},
        "seconds": data.get("seconds"),
    }


def artefacts(out: Path) -> dict[str, int]:
    """Bytes of each artefact a user takes away: adapters, merged models, deployments."""
    found: dict[str, int] = {}
    for pattern in ("model*/adapter", "model*/merged", "deploy/*/*.gguf", "deploy/*/Modelfile", "deploy/transformersjs/onnx"):
        for path in sorted(out.glob(pattern)):
            found[str(path.relative_to(out))] = _size(path)
    return found


def render(report: dict[str, Any]) -> str:
    """The summary the demo prints and writes to ``summary.md``."""
    out = report["out"]
    capture, labels = report.get("capture", {}), report.get("annotate", {})
    switch = report.get("switch", {})
    lines = ["", "## Wilson demo: summary", ""]
    lines.append(f"- Captured: {capture.get('categorisations', 0)} categorisations "
                 f"({capture.get('streamed', 0)} streamed) and {capture.get('agent_runs', 0)} agent runs "
                 "from the cloud teacher, through the openai SDK wrapped by Wilson")
    lines.append("- Labelled: " + ", ".join(f"{v} {k}" for k, v in labels.items()))
    exports = report.get("exports", {})
    lines.append("- Exported: " + "; ".join(
        f"{name} " + " + ".join(f"{n} {split}" for split, n in splits.items()) for name, splits in exports.items()
    ))
    scores = report.get("eval", {})
    if scores:
        fast = bool(report["config"].get("fast"))
        with_free = any("unconstrained" in by_model for by_model in scores.values())
        lines += ["- Categorisation accuracy on held-out transactions (exact match, never trained on"
                  + (", the app's category enum enforced; free decoding in brackets" if with_free else "") + "):", "",
                  "  | held-out set | teacher | base | tuned | target | met |", "  |---|---|---|---|---|---|"]
        for name, by_model in scores.items():
            bars = " and ".join(_bar_text(what, bar, strict) for what, bar, strict in _targets(name, by_model, fast))
            missed = any(m.startswith(SET_NAMES.get(name, name) + ":") for m in misses(report))
            free = by_model.get("unconstrained") or {}
            base, tuned = _fmt(by_model.get("base")), _fmt(by_model.get("tuned"))
            if free:
                base, tuned = f"{base} ({_fmt(free.get('base'))})", f"{tuned} ({_fmt(free.get('tuned'))})"
            lines.append(f"  | {SET_NAMES.get(name, name)} | {_fmt(by_model.get('teacher'))} | "
                         f"{base} | {tuned} | {bars or '-'} | "
                         f"{'**MISSED**' if missed else 'yes'} |")
        lines.append("")
        for miss in misses(report):
            lines.append(f"- MISSED: {miss}")
        lines += spread_lines(report["config"])
    lines += pipeline_lines(report.get("pipeline"))
    for target, record in report.get("deploy", {}).items():
        checks = record.get("checks", {})
        if checks:
            verdict = f"verified, {sum(checks.values())}/{len(checks)} checks passed"
        elif target == "ollama":
            verdict = "bundle written (its Modelfile template checked against the chat template)"
        else:
            verdict = "written, not run in its runtime here (`wilson deploy ... --verify` runs it)"
        lines.append(f"- Deployed {target}: {verdict}; provider {record.get('provider')}")
    for what in report.get("skipped", []):
        lines.append(f"- Skipped (optional runtime missing): {what}")
    lines += switch_lines(switch)
    lines.append("- Artefacts:")
    lines += [f"  - {path}: {_human(size)}" for path, size in report.get("artefacts", {}).items()]
    from wilson_core.cli._common import wilson_command

    lines.append(f"- Annotate more: `{wilson_command()} --db {report['db']} dashboard`")
    timings = report.get("timings", {})
    lines.append("- Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    cpu = report.get("cpu_seconds") or {}
    if cpu:
        # what this process itself computed (both cores together): load from other jobs sways it little
        lines.append("- CPU time of the demo's own process: " + ", ".join(f"{k} {v:.0f} s" for k, v in cpu.items()))
    lines.append(f"- Everything is in {out}/ (demo-summary.json has these figures)")
    return "\n".join(lines) + "\n"


def pipeline_lines(pipeline: dict[str, Any] | None) -> list[str]:
    """Train, evaluate, gate and deploy ran through ``wilson pipeline run``: the model's registry
    id and the gate's decision, with the numbers."""
    if not pipeline:
        return []
    gate = pipeline["gate"]
    return [f"- Trained, evaluated, gated and deployed by `wilson pipeline run` from {pipeline['config']} "
            f"(run folder {pipeline['run']}):",
            f"  - registry model {pipeline['model_id']}; live now: {pipeline.get('live') or 'none (the base)'}",
            f"  - gate {'PROMOTED' if gate['promote'] else 'REFUSED'}: {gate['reason']}"]


def switch_lines(switch: dict[str, Any]) -> list[str]:
    """The app switched by ``wilson proxy`` routes: shadow (agreement with the teacher), then local."""
    shadow, local = switch.get("shadow"), switch.get("local")
    if not shadow or not local:
        return []
    name = str(switch.get("provider", "")).split(":", 1)[0]
    agreement = shadow.get("agreement")
    return [
        f"- Switched with no app change, by `wilson proxy` routes to {switch.get('provider')}:",
        f"  - shadow: {shadow.get('calls')} calls answered by the teacher, {shadow.get('pairs')} also by {name}; "
        f"agreement with the teacher {'-' if agreement is None else f'{agreement:.0%}'} "
        f"({shadow.get('agreed')}/{shadow.get('pairs')}); right: {name} {shadow.get('tuned_right')}, "
        f"teacher {shadow.get('teacher_right')}; the app's p50 {shadow.get('app_p50_ms')} ms",
        f"  - local: {local.get('calls')} calls answered by {name}, {local.get('accuracy', 0):.0%} right; "
        f"the app's p50 {local.get('app_p50_ms')} ms; {local.get('captured')} captured",
    ]


def spread_lines(config: dict[str, Any]) -> list[str]:
    """The measured spread over seeds 0-4, when this run used the settings it was measured with."""
    from wilson_core.demo.loop import FAST, DemoConfig  # the loop imports this module

    fast = bool(config.get("fast"))
    defaults = {name: getattr(DemoConfig(out=Path()), name) for name in _MEASURED_WITH}
    defaults.update(FAST if fast else {})
    if fast:
        defaults.pop("base")  # --fast builds its base in the run's folder
    if any(config.get(key) != value for key, value in defaults.items()):
        return []
    spread = MEASURED_SPREAD[fast]
    figures = "; ".join(f"{SET_NAMES[name]} {' / '.join(f'{v:.3f}' for v in values)}"
                        for name, values in spread.items())
    return [f"- Tuned, the same settings over seeds 0-4 (min / median / max, docs/tutorial.md): {figures}"]


def _bar_text(what: str, bar: float, strict: bool) -> str:
    return f"{'>' if strict else '>='} {'' if what == 'target' else what + ' '}{bar:.2f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value, unit = float(size) / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
