"""Two rounds of the demo's finance app through ``wilson pipeline run`` (``wilson pipeline demo``).

The app categorises bank transactions with its "cloud model" (the demo's scripted
teacher, through the facade); the demo's reviewer labels the answers.  The loop is then
written down as ``OUT/pyproject.toml`` (the configuration a user copies) and run with
``wilson pipeline run``: round 1 is compared with the base model.  More traffic arrives
and is labelled, and round 2 runs with ``--if-new-labels``: the gate promotes the new
candidate or refuses it, and the summary says why, with the numbers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import click

from wilson_core.demo.loop import TARGET_MODULES
from wilson_core.errors import WilsonError


def capture(db: Path, count: int, seed: int) -> int:
    """``count`` categorisations by the cloud teacher, captured into ``db``."""
    from wilson_core.demo import finance
    from wilson_core.demo.teacher import teacher
    from wilson_core.facade import LLM

    llm = LLM("scripted:cloud-teacher", db=str(db), script=teacher(seed))
    for line, _category in finance.transactions(count, seed=seed):
        llm.chat(finance.categorise_messages(line), call_type="categorize", temperature=0.0)
    llm.close()
    return count


def write_heldout(folder: Path, count: int, seed: int, seen: set[str]) -> dict[str, Path]:
    """Transactions never captured: of merchants the app has seen, and of new merchants."""
    from wilson_core.demo import finance

    folder.mkdir(parents=True, exist_ok=True)
    sets = {"seen": [t for t in finance.draw(count * 3, seed=seed + 101) if t.merchant in seen][:count],
            "new": finance.draw(count, seed=seed + 202, new_merchants=True)}
    files = {}
    for name, drawn in sets.items():
        path = folder / f"{name}-merchants.jsonl"
        path.write_text("".join(json.dumps({"messages": [
            *finance.categorise_messages(t.line), {"role": "assistant", "content": t.category}]}) + "\n"
            for t in drawn), encoding="utf-8")
        files[name] = path
    return files


def pyproject(base: str, heldout: dict[str, Path], steps: int, lr: float, seed: int,
              deployers: tuple[str, ...] = ()) -> str:
    """The demo's ``[tool.wilson.pipeline]``: what a user copies into their own pyproject.toml."""
    deploy = "".join(f'\n[tool.wilson.pipeline.deploy.{name}]\nquant = "{quant}"\n'
                     for name, quant in (("gguf", "f32"), ("transformersjs", "fp32"), ("ollama", "q8_0"))
                     if name in deployers)
    return textwrap.dedent(f"""\
        [project]
        name = "finance-app"
        version = "0.1.0"

        [tool.wilson.export]
        redact = true          # `wilson export` and the dashboard's downloads of this database redact too

        [tool.wilson.pipeline]
        db = "data.db"
        runs = "pipeline-runs"

        [tool.wilson.pipeline.export]
        formats = ["sft"]
        call-type = "categorize"
        min-rating = 4
        eval-split = 0.1
        seed = {seed}
        redact = true

        [tool.wilson.pipeline.train]
        trainer = "lora-sft"
        base = "{base}"
        max-steps = {steps}
        lr = {lr}
        dropout = 0.0
        target-modules = "{TARGET_MODULES}"
        logging-steps = 10
        seed = {seed}

        [tool.wilson.pipeline.eval]
        max-tokens = 8
        sets = {{ heldout = "export", seen = "heldout/{heldout['seen'].name}", new = "heldout/{heldout['new'].name}" }}

        [tool.wilson.pipeline.eval.evaluators.exact-match]
        [tool.wilson.pipeline.eval.evaluators.token-f1]

        [tool.wilson.pipeline.gate]
        metric = "exact-match"
        set = "all"
        margin = 0.02
        tolerance = 0.1
        """) + deploy


def run(out: Path, *, base: str, count: int = 120, more: int = 120, steps: int = 30, lr: float = 3e-3,
        heldout: int = 24, seed: int = 0, deployers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Both rounds; returns what each round's gate decided.  ``out`` must not hold a database yet."""
    from wilson_core.cli import main
    from wilson_core.demo import finance
    from wilson_core.demo.review import review
    from wilson_core.demo.teacher import teacher
    from wilson_core.store import open_store
    from wilson_core.store.registry import Registry

    out.mkdir(parents=True, exist_ok=True)
    db = out / "data.db"
    if db.exists():
        raise WilsonError(f"{db} exists: the pipeline demo starts from an empty database (choose another --out)")
    config = out / "pyproject.toml"

    def pipeline(*extra: str) -> None:
        click.secho("      $ wilson pipeline run --config " + " ".join([str(config), *extra]), dim=True)
        code = main(["pipeline", "run", "--config", str(config), *extra])
        if code != 0:
            raise WilsonError(f"'wilson pipeline run' exited with {code}")

    rounds = []
    click.secho(f"Round 1: {count} transactions captured and reviewed", bold=True, fg="cyan")
    capture(db, count, seed)
    labels = review(open_store(db), teacher(seed + 1))
    click.echo("      " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    seen = {t.merchant for t in finance.draw(count, seed=seed)}
    files = write_heldout(out / "heldout", heldout, seed, seen)
    config.write_text(pyproject(base, files, steps, lr, seed, deployers), encoding="utf-8")
    click.echo(f"      the loop, written down: {config}")
    pipeline()
    rounds.append(_round(out))
    click.secho(f"Round 2: {more} more transactions captured and reviewed", bold=True, fg="cyan")
    capture(db, more, seed + 500)
    labels = review(open_store(db), teacher(seed + 501))
    click.echo("      " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    pipeline("--if-new-labels", "1")
    rounds.append(_round(out))
    live = Registry(open_store(db)).live()
    text = render(rounds, live)
    (out / "two-rounds.md").write_text(text + "\n", encoding="utf-8")
    click.echo("\n" + text)
    return {"rounds": rounds, "live": live}


def _round(out: Path) -> dict[str, Any]:
    from .runner import run_folders

    folder = run_folders(out / "pipeline-runs")[-1]
    gate = json.loads((folder / "gate.json").read_text(encoding="utf-8"))
    scores = json.loads((folder / "eval" / "scores.json").read_text(encoding="utf-8"))
    return {"run": folder.name, "model": gate["model_id"], "reference": gate["reference"],
            "promote": gate["promote"], "reason": gate["reason"], "blocking": gate["blocking"],
            "candidate": scores["candidate"], "reference_scores": scores["reference_scores"]}


def render(rounds: list[dict[str, Any]], live: str | None) -> str:
    """The two-round summary: per round the candidate, what it was compared with, the decision."""
    lines = ["Two rounds through 'wilson pipeline run'", ""]
    for number, found in enumerate(rounds, 1):
        theirs = {(r["set"], r["evaluator"]): r["value"] for r in found["reference_scores"]}
        cells = [f"{r['set']} {r['evaluator']} {r['value']:.3f} vs {theirs.get((r['set'], r['evaluator'])) or 0:.3f}"
                 for r in found["candidate"] if r["value"] is not None and r["evaluator"] == "exact-match"]
        lines += [f"round {number} (run {found['run']}): candidate {found['model']} against {found['reference']}",
                  "  " + "; ".join(cells),
                  f"  {'PROMOTED' if found['promote'] else 'REFUSED'}: {found['reason']}"]
    lines.append(f"live model: {live or 'none (the base)'}")
    return "\n".join(lines)
