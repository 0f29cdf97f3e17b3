"""The one summary of a pipeline run: scores side by side, the gate's decision, what is live."""

from __future__ import annotations

import json
from typing import Any


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "-"
    interval = f" [{row['low']:.2f}, {row['high']:.2f}]" if row.get("low") is not None else ""
    return f"{row['value']:.3f}{interval}"


def render(run: Any) -> str:
    """The summary text of ``run`` (a :class:`~wilson_core.pipeline.runner.Run`)."""
    stages = run.state["stages"]
    lines = [f"Pipeline run {run.folder.name}  ({run.folder})", ""]
    export = stages.get("export")
    if export:
        counts = export["counts"]
        lines.append(f"export   {', '.join(export['files'])}: {counts['train']} train / {counts['eval']} eval lines "
                     f"(hash {export['export_hash'][:12]})")
    train = stages.get("train")
    if train:
        metrics = train.get("metrics", {})
        loss = f", train loss {metrics['train_loss']:.3g}" if isinstance(metrics.get("train_loss"), float) else ""
        resumed = f", resumed from {train['resumed_from']}" if train.get("resumed_from") else ""
        lines.append(f"train    model {train['model_id']}{loss}{resumed}: {train['out']}")
    evaluation = stages.get("evaluate")
    if evaluation:
        theirs = {(r["set"], r["evaluator"]): r for r in evaluation["reference_scores"]}
        width = max(12, *(len(r["set"]) + 2 for r in evaluation["candidate"]))
        lines += ["", f"{'set':<{width}}{'evaluator':<18}{'candidate':>24}{evaluation['reference_label'][:22]:>24}",
                  "-" * (width + 66)]
        for row in evaluation["candidate"]:
            other = theirs.get((row["set"], row["evaluator"]))
            lines.append(f"{row['set']:<{width}}{row['evaluator']:<18}{_cell(row):>24}{_cell(other):>24}")
        lines.append("")
    gate = stages.get("gate")
    if gate:
        lines.append(("PROMOTED  " if gate["promote"] else "REFUSED   ") + gate["reason"])
        if not gate["promote"]:
            lines.append(f"          blocking metric: {gate['blocking']}; live model stays: "
                         f"{gate['live_after'] or 'none (the base)'}")
    deploy = stages.get("deploy")
    if deploy:
        if deploy.get("skipped"):
            lines.append(f"deploy   skipped: {deploy['skipped']}")
        for name, target in deploy.get("targets", {}).items():
            lines.append(f"deploy   {name}: {target['out']}" + (f" -> LLM(\"{target['provider']}\")"
                                                                if target.get("provider") else ""))
    live = run.registry.live()
    lines.append(f"live     {live or 'none (the base model)'}")
    return "\n".join(lines)


def write(run: Any) -> str:
    """Write ``summary.md`` and ``summary.json`` into the run folder; return the text."""
    text = render(run)
    (run.folder / "summary.md").write_text(text + "\n", encoding="utf-8")
    data = {"run": run.folder.name, "stages": run.state["stages"], "live": run.registry.live()}
    (run.folder / "summary.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return text
