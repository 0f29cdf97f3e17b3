"""The demo: a personal-finance agent taken around the whole loop.

Every stage runs through the same public entry points a user has: the
facade for capture, the annotation API, and the ``wilson`` commands for
export, train, eval and deploy.  Nothing is faked except the "cloud model",
which is the ``scripted`` provider (there is no network here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from wilson_core.errors import WilsonError

from . import finance


class Step:
    """Prints a numbered stage with its wall time."""

    def __init__(self, number: int, total: int, title: str) -> None:
        self.label = f"[{number}/{total}] {title}"

    def __enter__(self) -> Step:
        click.secho(self.label, bold=True, fg="cyan")
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            click.echo(f"      done in {time.perf_counter() - self.started:.1f} s\n")


def _wilson(*args: str) -> None:
    """Run one ``wilson`` command in-process, exactly as a user would type it."""
    from wilson_core.cli import main

    click.secho("      $ wilson " + " ".join(args), dim=True)
    code = main(list(args))
    if code != 0:
        raise WilsonError(f"demo step failed: 'wilson {' '.join(args)}' exited with {code}")


def capture(db: Path, count: int, seed: int) -> dict[str, int]:
    """The app at work: categorise transactions and answer one agent question with tools."""
    from wilson_core.facade import LLM

    llm = LLM("scripted:cloud-teacher", db=str(db), script=finance.teacher(seed))
    answered = 0
    for line, _category in finance.transactions(count, seed=seed):
        llm.chat(finance.categorise_messages(line), call_type="categorize", temperature=0.0)
        answered += 1
    runs = 0
    for question in ("How much did I spend on dining in October?",) * 3:
        with llm.run(call_type="agent") as run:
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": finance.AGENT_SYSTEM_PROMPT},
                {"role": "user", "content": question},
            ]
            reply = run.chat(messages, tools=finance.TOOLS)
            while reply.tool_calls:
                messages.append(reply.message)
                for call in reply.tool_calls:
                    result = finance.run_tool(call.name, call.arguments)
                    run.record_tool_result(call, result)
                    messages.append(
                        {"role": "tool", "name": call.name, "tool_call_id": call.id, "content": json.dumps(result)}
                    )
                reply = run.chat(messages, tools=finance.TOOLS)
        runs += 1
    return {"categorised": answered, "agent_runs": runs}


def annotate(db: Path) -> dict[str, int]:
    """A reviewer's pass, written as rules: rate, and correct what was wordy or wrong."""
    from wilson_core import annotations
    from wilson_core.store import open_store

    store = open_store(db)
    counts = {"rated": 0, "corrected": 0}
    for interaction in store.iter_interactions("i.status = 'ok'"):
        if interaction.call_type == "categorize":
            truth = finance.true_category(interaction.user_prompt or "")
            answer = (interaction.response_content or "").strip()
            if answer == truth:
                stars = 5
            elif truth and truth in answer:
                stars = 2
            else:
                stars = 1
            annotations.rate(store, interaction.id, stars, source="rule", annotator="demo")
            counts["rated"] += 1
            if stars < 4 and truth:
                annotations.correct(store, interaction.id, truth, source="rule", annotator="demo")
                counts["corrected"] += 1
        elif interaction.response_content:
            annotations.rate(store, interaction.id, 5, source="rule", annotator="demo")
            counts["rated"] += 1
    return counts


def run_demo(out: Path, base: str, steps: int, count: int, seed: int, targets: tuple[str, ...]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    db = out / "data.db"
    if db.exists():
        raise WilsonError(f"{db} exists: the demo starts from an empty database (choose another --out)")
    data = out / "export" / "sft.jsonl"
    model_dir = out / "model"
    total = 7
    summary: dict[str, Any] = {"out": str(out), "base": base}

    with Step(1, total, "Capture: the finance agent calls its cloud model through wilson_core.LLM"):
        summary["capture"] = capture(db, count, seed)
        _wilson("--db", str(db), "stats")
    with Step(2, total, "Annotate: rate every answer, correct the wordy and wrong ones"):
        summary["annotate"] = annotate(db)
        click.echo(f"      {summary['annotate']}")
    with Step(3, total, "Export: SFT JSONL in TRL's format, redacted, split by run"):
        _wilson(
            "--db", str(db), "export", "sft", "--out", str(data), "--call-type", "categorize",
            "--min-rating", "4", "--eval-split", "0.2", "--seed", str(seed), "--redact",
        )
    eval_data = data.with_name("sft.eval.jsonl")
    with Step(4, total, f"Train: LoRA SFT on {base}"):
        _wilson(
            "train", "lora-sft", "--data", str(data), "--eval-data", str(eval_data), "--base", base,
            "--out", str(model_dir), "--max-steps", str(steps), "--force",
        )
    with Step(5, total, "Evaluate: base against tuned on the held-out split"):
        _wilson(
            "eval", "--data", str(eval_data), "--base", base, "--tuned", str(model_dir),
            "--json", str(out / "eval.json"), "--samples", "3", "--max-new-tokens", "24",
        )
    deployed: dict[str, str] = {}
    with Step(6, total, "Deploy: " + ", ".join(targets) + " (verified against PyTorch)"):
        for target in targets:
            target_dir = out / "deploy" / target
            args = ["deploy", target, "--model", str(model_dir / "merged"), "--out", str(target_dir), "--verify", "--force"]
            # Full precision: it verifies within PyTorch's own float32 noise on SmolLM2,
            # whose quantised files (GGUF F16/Q8_0, ONNX int8) exceed the log-prob bounds
            # of --verify (docs/deploy.md); the demo must pass --verify.
            args += ["--quant", "f32" if target == "gguf" else "fp32"]
            _wilson(*args)
            deployed[target] = str(target_dir)
    with Step(7, total, "Switch: the app now runs the tuned local model, still captured"):
        summary["switch"] = switch(db, deployed, seed)
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def switch(db: Path, deployed: dict[str, str], seed: int) -> list[dict[str, Any]]:
    from wilson_core.facade import LLM
    from wilson_core.store import open_store

    results = []
    provider = _local_provider(deployed)
    if provider is None:
        click.echo("      no local deployment to switch to")
        return results
    llm = LLM(provider, db=str(db))
    for line, category in finance.transactions(5, seed=seed + 1000):
        reply = llm.chat(finance.categorise_messages(line), call_type="categorize", max_tokens=8)
        results.append({"transaction": line, "expected": category, "answer": reply.text.strip()})
        click.echo(f"      {line:<52} -> {reply.text.strip()!r:<18} (expected {category})")
    store = open_store(db)
    row = store.connection().execute(
        "SELECT count(*) FROM interactions WHERE provider = ?", (provider.split(':', 1)[0],)
    ).fetchone()[0]
    click.echo(f"      captured {row} calls of the local model into {db}")
    return results


def _local_provider(deployed: dict[str, str]) -> str | None:
    gguf_dir = deployed.get("gguf")
    if gguf_dir:
        files = sorted(Path(gguf_dir).glob("*.gguf"))
        merged = [f for f in files if "adapter" not in f.name]
        if merged:
            return f"llamacpp:{merged[0]}"
    if deployed.get("transformersjs"):
        return f"onnx:{deployed['transformersjs']}"
    return None

