"""The demo: a personal-finance agent taken around the whole loop.

Every stage runs through the same public entry points a user has: the facade
for capture, the annotation API for review, and the ``wilson`` commands for
export, train, eval and deploy.  Nothing is faked except the "cloud model",
which is the ``scripted`` teacher (there is no network here).  Each stage
leaves its output in the demo folder, to be inspected afterwards.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import attrs
import click

from wilson_core.errors import WilsonError

from . import agent, finance, summary
from .teacher import heldout_accuracy, teacher


@attrs.frozen
class DemoConfig:
    """What ``wilson demo`` runs; :func:`config_for` fills in the defaults of a mode."""

    out: Path
    base: str = "smollm2-135m"
    fast: bool = False
    count: int = 200  # categorisations captured
    runs: int = 6  # agent runs captured
    steps: int = 48  # LoRA SFT steps
    lr: float = 2e-3
    dpo: bool = False
    verify_all: bool = False  # also run Transformers.js over the ONNX on a full-size base
    heldout: int = 40  # held-out transactions per set (seen / new merchants)
    targets: tuple[str, ...] = ("gguf", "transformersjs", "ollama")
    seed: int = 0
    strict: bool = False  # exit 3 when a target is missed
    data_only: bool = False  # stop after the data stages (capture, annotate, export, held-out sets)


class TargetsMissed(WilsonError):
    """``--strict``: the tuned model missed at least one of the demo's targets."""

    exit_code = 3


#: ``--fast``: a tiny model built here in seconds instead of SmolLM2.
FAST = {"count": 120, "steps": 30, "lr": 3e-3, "heldout": 24}

#: LoRA on every projection of a Llama block: the attention-only default learns
#: the merchant -> category mapping too slowly for a few minutes on a laptop CPU.
TARGET_MODULES = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def default_out(cwd: Path | None = None) -> Path:
    """A new folder under the current directory: ``wilson-demo``, ``wilson-demo-2``, ..."""
    cwd = cwd or Path.cwd()
    candidate, number = cwd / "wilson-demo", 1
    while candidate.exists():
        number += 1
        candidate = cwd / f"wilson-demo-{number}"
    return candidate


class Step:
    """Prints a numbered stage and its wall time, and records the time."""

    def __init__(self, number: int, total: int, title: str, timings: dict[str, float],
                 cpu: dict[str, float] | None = None) -> None:
        self.label = f"[{number}/{total}] {title}"
        self.key = title.split(":", 1)[0].lower()
        self.timings = timings
        self.cpu = cpu

    def __enter__(self) -> Step:
        click.secho(self.label, bold=True, fg="cyan")
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            seconds = time.perf_counter() - self.started
            self.timings[self.key] = round(seconds, 1)
            if self.cpu is not None:
                # CPU seconds of this process (all its threads): steadier than wall time on a busy machine
                self.cpu[self.key] = round(time.process_time() - self.cpu_started, 1)
            click.echo(f"      done in {seconds:.1f} s\n")


def _wilson(*args: str) -> None:
    """Run one ``wilson`` command in-process, exactly as a user would type it."""
    from wilson_core.cli import main
    from wilson_core.cli._common import wilson_command

    click.secho(f"      $ {wilson_command()} " + " ".join(args), dim=True)
    code = main(list(args))
    if code != 0:
        raise WilsonError(f"demo step failed: 'wilson {' '.join(args)}' exited with {code}")


def capture(db: Path, config: DemoConfig) -> dict[str, Any]:
    """The app at work, recorded by Wilson's drop-in OpenAI client: it categorises transactions
    (streaming one in four, the ones a user watches) and answers spending questions with tools,
    against the cloud teacher served over HTTP on 127.0.0.1."""
    from .app import ask, categorise, connect
    from .teacher_server import TeacherServer

    with TeacherServer(seed=config.seed) as cloud:
        click.echo(f"      cloud model: {cloud.openai_url} (OpenAI-compatible, the scripted teacher behind it)")
        click.echo(f"      client: wilson_core.integrations.openai.OpenAI(base_url=..., wilson_db={str(db)!r})")
        clients = connect(cloud.openai_url, capture_db=db)
        streamed = 0
        try:
            for number, (line, _category) in enumerate(finance.transactions(config.count, seed=config.seed)):
                watched = number % 4 == 0
                categorise(clients.categoriser, line, stream=watched)
                streamed += watched
            questions = agent.questions()
            for number in range(config.runs):
                ask(clients.assistant, questions[number % len(questions)].text)
        finally:
            clients.close()
    return {"categorisations": config.count, "streamed": streamed, "agent_runs": config.runs,
            "client": "openai SDK through wilson_core.integrations.openai"}


def write_heldout(folder: Path, config: DemoConfig, seen_merchants: set[str]) -> dict[str, Path]:
    """Fresh transactions never captured: of merchants seen in training, and of new ones."""
    folder.mkdir(parents=True, exist_ok=True)
    seen = [t for t in finance.draw(config.heldout * 3, seed=config.seed + 101) if t.merchant in seen_merchants]
    sets = {
        "seen": seen[: config.heldout],
        "new": finance.draw(config.heldout, seed=config.seed + 202, new_merchants=True),
    }
    files = {}
    for name, drawn in sets.items():
        path = folder / f"{name}-merchants.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for t in drawn:
                messages = [*finance.categorise_messages(t.line), {"role": "assistant", "content": t.category}]
                # the app's request parameters: wilson eval scores with and without the constraint
                handle.write(json.dumps({"messages": messages, "params": finance.CATEGORISE_PARAMS}) + "\n")
        files[name] = path
    return files


def trained_merchants(export_file: Path) -> set[str]:
    merchants = set()
    for line in export_file.read_text(encoding="utf-8").splitlines():
        for message in json.loads(line)["messages"]:
            if message["role"] == "user":
                merchant = finance.merchant_of(message["content"])
                if merchant:
                    merchants.add(merchant)
    return merchants


def run_demo(config: DemoConfig) -> dict[str, Any]:
    from .app import require_sdk
    from .routing import require_proxy

    require_sdk()
    if not config.data_only:
        require_proxy()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    db = out / "data.db"
    if db.exists():
        raise WilsonError(f"{db} exists: the demo starts from an empty database (choose another --out)")
    export = out / "export"
    model_dir = out / "model"
    node_problem = _node_problem()
    node = node_problem is None
    targets = tuple(t for t in config.targets if t != "transformersjs" or node)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    report: dict[str, Any] = {"out": str(out), "config": _plain(config), "timings": timings, "cpu_seconds": cpu}
    started = time.perf_counter()
    total = 3 if config.data_only else 8
    teacher_script = teacher(config.seed + 1)

    with Step(1, total, "Capture: the finance app calls its cloud model with the openai SDK, recorded by Wilson",
              timings, cpu):
        report["capture"] = capture(db, config)
        _wilson("--db", str(db), "stats")
    with Step(2, total, "Annotate: stars checked against the ledger, retries, corrections, pairs", timings, cpu):
        from wilson_core.store import open_store

        from .review import review

        report["annotate"] = review(open_store(db), teacher_script)
        click.echo("      " + ", ".join(f"{k} {v}" for k, v in report["annotate"].items()))
    with Step(3, total, "Export: SFT and DPO JSONL in TRL's format, redacted, with an eval split", timings, cpu):
        sft = export / "sft.jsonl"
        _wilson("--db", str(db), "export", "sft", "--out", str(sft), "--call-type", "categorize",
                "--min-rating", "4", "--eval-split", "0.1", "--seed", str(config.seed), "--redact")
        _wilson("--db", str(db), "export", "dpo", "--out", str(export / "dpo.jsonl"), "--call-type", "categorize",
                "--redact")
        _wilson("--db", str(db), "export", "sft", "--out", str(export / "agent-sft.jsonl"), "--call-type", "agent",
                "--granularity", "run", "--min-rating", "4", "--redact")
        heldout = write_heldout(out / "heldout", config, trained_merchants(sft))
        click.echo(f"      held out, never trained on: {', '.join(str(p) for p in heldout.values())}")
        # the cloud teacher's own accuracy on the same sets: the bar the tuned model must reach
        teacher_scores = {f"{name}-merchants": heldout_accuracy(path, config.seed + 303)
                          for name, path in heldout.items()}
    if config.data_only:
        timings["total"] = round(time.perf_counter() - started, 1)
        report["teacher"] = teacher_scores
        report["exports"] = summary.export_counts(export)
        (out / "demo-summary.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        return report
    base = config.base
    with Step(4, total, f"Base model: {'a tiny model built here (--fast)' if config.fast else base}", timings, cpu):
        if config.fast:
            base = str(out / "base")
            _wilson("model", "init", "--arch", "llama", "--out", base, "--pretrain-steps", "150",
                    "--seed", str(config.seed), "--force")
        elif base == "smollm2-135m" or Path(base).exists():
            click.echo(f"      {base}: read from local files, nothing is downloaded")
        else:
            click.echo(f"      {base}: from the Hugging Face hub (downloaded once, then cached)")
    with Step(5, total, f"Train: LoRA SFT{' then DPO' if config.dpo else ''} on {base}", timings, cpu):
        _wilson("train", "lora-sft", "--data", str(sft), "--eval-data", str(sft.with_name("sft.eval.jsonl")),
                "--base", base, "--out", str(model_dir), "--max-steps", str(config.steps), "--lr", str(config.lr),
                "--target-modules", TARGET_MODULES, "--dropout", "0", "--logging-steps", "8",
                "--seed", str(config.seed), "--force")
        if config.dpo:
            dpo_dir = out / "model-dpo"
            _wilson("train", "lora-dpo", "--data", str(export / "dpo.jsonl"), "--base", str(model_dir / "merged"),
                    "--out", str(dpo_dir), "--max-steps", "10", "--lr", "5e-5", "--target-modules", TARGET_MODULES,
                    "--seed", str(config.seed), "--force")
            model_dir = dpo_dir
    with Step(6, total, "Evaluate: base against tuned on held-out transactions", timings, cpu):
        _wilson("eval", "--data", str(heldout["seen"]), "--data", str(heldout["new"]), "--base", base,
                "--tuned", str(model_dir), "--json", str(out / "eval.json"), "--max-new-tokens", "8",
                "--no-log-likelihood", "--batch-size", "48", "--samples", "3")
    deployed: dict[str, str] = {}
    report["deploy"] = {}
    with Step(7, total, "Deploy: " + ", ".join(targets), timings, cpu):
        for target in targets:
            target_dir = out / "deploy" / target
            args = ["deploy", target, "--model", str(model_dir / "merged"), "--out", str(target_dir), "--force"]
            if target == "ollama":
                # The bundle Ollama takes (Q8_0, its usual choice); nothing to verify without a server,
                # and the same GGUF writer is verified in llama.cpp just before.
                args += ["--quant", "q8_0", "--name", "wilson-demo-finance"]
            else:
                # Full precision: it verifies within PyTorch's own float32 noise.  docs/deploy.md
                # gives the measured error of each quantised type on SmolLM2.
                args += ["--quant", "f32" if target == "gguf" else "fp32"]
                # llama.cpp checks the GGUF always; Transformers.js checks the ONNX with --fast
                # (on SmolLM2 that check alone takes about 80 s of the demo's 6-minute budget).
                if node and (target == "gguf" or config.fast or config.verify_all):
                    args.append("--verify")
            _wilson(*args)
            deployed[target] = str(target_dir)
            report["deploy"][target] = summary.deploy_record(target_dir)
        if not node:
            click.echo(f"      skipped: {node_problem}: GGUF written but not run in llama.cpp, "
                       "transformersjs skipped")
            report["skipped"] = [f"running the GGUF in llama.cpp and the transformersjs deployment "
                                 f"({node_problem}); the switch runs the merged model in PyTorch instead"]
    with Step(8, total, "Switch: wilson proxy routes the app to the tuned model, shadow then local", timings, cpu):
        report["switch"] = switch(db, deployed, config, model_dir / "merged", node)
    timings["total"] = round(time.perf_counter() - started, 1)
    report["eval"] = summary.eval_scores(out / "eval.json", teacher_scores)
    report["misses"] = summary.misses(report)
    report["exports"] = summary.export_counts(export)
    report["artefacts"] = summary.artefacts(out)
    report["db"] = str(db)
    (out / "demo-summary.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    text = summary.render(report)
    (out / "summary.md").write_text(text, encoding="utf-8")
    click.echo(text)
    if config.strict and report["misses"]:
        raise TargetsMissed(f"--strict: {len(report['misses'])} target(s) missed: " + "; ".join(report["misses"]))
    return report


def switch(db: Path, deployed: dict[str, str], config: DemoConfig, merged: Path, node: bool) -> dict[str, Any]:
    """The app, unchanged, pointed at ``wilson proxy``: a shadow route first, then a local one.

    Only the proxy's ``[tool.wilson.proxy]`` configuration changes between the two steps.
    """
    from . import routing
    from .app import connect
    from .teacher_server import TeacherServer

    # llama.cpp and Transformers.js run under Node here; without it, PyTorch runs the merged model.
    provider = (local_provider(deployed) if node else None) or f"transformers:{merged}"
    name = provider.split(":", 1)[0]
    folder = config.out / "switch"
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "pyproject.toml"
    report: dict[str, Any] = {"provider": provider, "config": str(settings)}
    calls = routing.FAST_CALLS if config.fast else routing.CALLS
    with TeacherServer(seed=config.seed + 2) as cloud:
        routing.write_config(settings, cloud.openai_url, provider, "shadow")
        from wilson_core.cli._common import wilson_command

        click.secho(f"      $ {wilson_command()} --db {db} proxy --port 0 --config {settings}", dim=True)
        with routing.ProxyProcess(db, settings, folder / "proxy.log") as proxy:
            click.echo(f"      the app's OPENAI_BASE_URL={proxy.url}/v1 (plain openai SDK; the proxy records)")
            clients = connect(proxy.url + "/v1")
            try:
                click.echo(f'      route {routing.ROUTE}: mode = "shadow" (the teacher answers the app, '
                           f"{name} answers in the background)")
                shadow = routing.use_app(clients, list(finance.transactions(calls, seed=config.seed + 1000)))
                proxy.wait_shadows()
                proxy.wait_recorded()
                shadow["route"] = proxy.route()
                shadow.update(routing.shadow_agreement(db, name))
                click.echo(f"      shadow: {shadow['agreed']}/{shadow['pairs']} answers of {name} agree with the "
                           f"teacher's (right: {name} {shadow['tuned_right']}, teacher {shadow['teacher_right']}); "
                           f"the app waited p50 {shadow['app_p50_ms']} ms, for the teacher only")
                routing.write_config(settings, cloud.openai_url, provider, "local")
                click.echo(f'      {settings.name}: mode = "local" (the proxy re-reads it; the app is not touched)')
                proxy.wait_mode("local")
                local = routing.use_app(clients, list(finance.transactions(calls, seed=config.seed + 2000)))
                proxy.wait_recorded()
                local["route"] = proxy.route()
                click.echo(f"      local: {name} answered the app, {local['accuracy']:.0%} right; "
                           f"the app waited p50 {local['app_p50_ms']} ms")
                _wilson("proxy", "routes", "--port", str(proxy.port))
            finally:
                clients.close()
    from wilson_core.store import open_store
    from wilson_core.store.summary import count_by_provider

    captured = count_by_provider(open_store(db).connection(), name)
    local["captured"] = captured - shadow["pairs"]
    click.echo(f"      captured {captured} calls of {name} into {db}: {shadow['pairs']} in shadow, "
               f"{local['captured']} answering the app")
    report.update(shadow=shadow, local=local, captured=captured)
    return report


def local_provider(deployed: dict[str, str]) -> str | None:
    """The deployment the app switches to: the GGUF in llama.cpp, else the ONNX in onnxruntime."""
    gguf_dir = deployed.get("gguf")
    if gguf_dir:
        merged = [f for f in sorted(Path(gguf_dir).glob("*.gguf")) if "adapter" not in f.name]
        if merged:
            return f"llamacpp:{merged[0]}"
    if deployed.get("transformersjs"):
        return f"onnx:{deployed['transformersjs']}"
    return None


def _node_problem() -> str | None:
    """``None`` when Node can run llama.cpp and Transformers.js here (their packages installed,
    or npm to install them on first use), else why not."""
    if shutil.which("node") is None:
        return "Node.js (node) is not on PATH"
    try:
        from wilson_gguf.runner import runner_ready
        from wilson_onnx.node import node_ready
    except ImportError as exc:
        return f"a plugin is missing ({exc})"
    return runner_ready() or node_ready()


def _plain(config: DemoConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in attrs.asdict(config).items()}
