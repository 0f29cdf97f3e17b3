"""Running the stages of ``[tool.wilson.pipeline]`` under one run folder.

    RUNS/<run>/state.json         what each finished stage produced (``--from STAGE`` reads it)
    RUNS/<run>/export/            one file (+ eval twin + manifest) per format, lineage.jsonl
    RUNS/<run>/train/             the trainer's run folder (checkpoints/, adapter/, merged/)
    RUNS/<run>/train-then/        ``[train.then]``'s run folder, trained on train/merged: the candidate
    RUNS/<run>/eval/              answers.jsonl (every system's answer to every case), scores.json;
                                  with ``compare``: eval.json, ``wilson eval``'s report, instead of answers.jsonl
    RUNS/<run>/gate.json          the gate's decision
    RUNS/<run>/deploy/NAME/       each deployer's output
    RUNS/<run>/summary.json, summary.md

Stages call the same library functions the commands use (``run_export``, the trainer
and deployer drivers); nothing is run in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wilson_core.errors import WilsonError
from wilson_core.records import utcnow

from . import STAGES
from .config import COMPARE_METRICS, EXPORT_SET, FREE, PipelineConfig, export_options


class PipelineError(WilsonError):
    """A stage cannot run or failed; the run folder keeps what was done."""


class PipelineInterrupted(PipelineError):
    """Training stopped early with a checkpoint saved (``--from train`` continues it)."""

    exit_code = 130


# -- run folders ---------------------------------------------------------------


def run_folders(runs: Path) -> list[Path]:
    """The run folders under ``runs``, oldest first."""
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if (p / "state.json").is_file())


def new_run_folder(runs: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    number = len(run_folders(runs)) + 1
    folder = runs / f"{number:03d}-{stamp}"
    while folder.exists():
        number += 1
        folder = runs / f"{number:03d}-{stamp}"
    folder.mkdir(parents=True)
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read {folder / 'state.json'}: {exc}") from None


def write_state(folder: Path, state: dict[str, Any]) -> None:
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def labels_since_last_run(config: PipelineConfig, registry: Any) -> tuple[int, str | None]:
    """How many labels were added since the last run's export, and that run's name."""
    for folder in reversed(run_folders(config.runs)):
        done = read_state(folder).get("stages", {}).get("export")
        if done:
            return registry.labels_since(done["labels_at"]), folder.name
    return registry.labels_since(None), None


# -- the run -------------------------------------------------------------------


class Run:
    """One pipeline run: its folder, state, store and registry."""

    def __init__(self, config: PipelineConfig, folder: Path, store: Any, echo: Callable[[str], None]) -> None:
        from wilson_core.store.registry import Registry

        self.config = config
        self.folder = folder
        self.store = store
        self.registry = Registry(store)
        self.echo = echo
        self.state = read_state(folder) if (folder / "state.json").exists() else {
            "run": folder.name, "started_at": utcnow(), "stages": {}}
        self.resuming: set[str] = set()

    def done(self, stage: str) -> dict[str, Any]:
        found = self.state["stages"].get(stage)
        if found is None:
            raise PipelineError(f"run {self.folder.name} has not finished the {stage} stage: "
                                f"start from it (--from {stage}) or run the whole pipeline")
        return found

    def finish(self, stage: str, result: dict[str, Any]) -> None:
        self.state["stages"][stage] = {**result, "finished_at": utcnow()}
        for later in STAGES[STAGES.index(stage) + 1:]:
            self.state["stages"].pop(later, None)
        write_state(self.folder, self.state)

    # -- export --------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        from wilson_core.exporting import run_export

        folder = self.folder / "export"
        folder.mkdir(exist_ok=True)
        labels_at = utcnow()
        files: dict[str, Any] = {}
        for fmt in self.config.formats:
            out = folder / f"{fmt}.jsonl"
            manifest = run_export(self.store, export_options(self.config, fmt), out)
            files[fmt] = {"path": str(out), "counts": manifest["counts"],
                          "eval": str(out.parent / manifest["files"]["eval"]["path"]) if "eval" in manifest["files"]
                          else None}
            self.echo(f"      {fmt}: {manifest['counts']['train']} train, {manifest['counts']['eval']} eval lines")
        trained = files[self.config.train_data]
        if trained["counts"]["train"] == 0:
            raise PipelineError(f"the {self.config.train_data} export matched nothing: no training data "
                                "(check the filters in [tool.wilson.pipeline.export])")
        manifest_file = Path(trained["path"] + ".manifest.json")
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        digest = hashlib.sha256(json.dumps(
            [manifest["format"], {k: v["sha256"] for k, v in manifest["files"].items()}], sort_keys=True
        ).encode("utf-8")).hexdigest()
        ids = manifest["interaction_ids"]
        labels = self.registry.current_labels([i for split in ids.values() for i in split])
        with (folder / "lineage.jsonl").open("w", encoding="utf-8") as handle:
            for split, split_ids in ids.items():
                for iid in split_ids:
                    aid, version = labels.get(iid, (None, None))
                    handle.write(json.dumps({"interaction_id": iid, "split": split, "annotation_id": aid,
                                             "label_version": version}) + "\n")
        return {"files": files, "export_hash": digest, "manifest": str(manifest_file),
                "counts": trained["counts"], "labels_at": labels_at}

    # -- train ---------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        from wilson_core.interfaces import TRAINERS
        from wilson_core.plugins import load_driver
        from wilson_core.store.registry import model_id_for
        from wilson_core.training import build_config

        export = self.done("export")
        trained = export["files"][self.config.train_data]
        settings = dict(self.config.train_settings)
        then = self.config.then
        if then is not None:  # the second training and the bytes of its data are part of the model too
            digest = hashlib.sha256(Path(export["files"][then["data"]]["path"]).read_bytes()).hexdigest()
            settings["then"] = {"trainer": then["trainer"], "data": then["data"], "data_sha256": digest,
                                **then["settings"]}
        model_id = model_id_for(export["export_hash"], self.config.trainer, self.config.base, settings)
        out = self.folder / "train"
        # complete checkpoints only (the trainer writes trainer_state.json last): a hard kill mid-save
        # leaves a folder that cannot be resumed
        checkpoints = sorted((p for p in (out / "checkpoints").glob("checkpoint-*")
                              if (p / "trainer_state.json").is_file()),
                             key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1
                             ) if out.is_dir() else []
        # resume only a training of this very model (same export, same settings)
        same = self.state.get("training", {}).get("model_id") == model_id
        resume = bool(checkpoints) and "train" in self.resuming and same
        self.state["training"] = {"model_id": model_id, "out": str(out)}
        write_state(self.folder, self.state)
        flags: dict[str, Any] = {"data": trained["path"], "out": str(out), "resume": resume or None,
                                 "force": (out.exists() and not resume) or None}
        if trained.get("eval"):
            flags["eval_data"] = trained["eval"]
        config = build_config(self.config.trainer, self.config.train_settings, flags)
        driver = load_driver(TRAINERS, self.config.trainer)()
        driver.check(config)
        if resume:
            self.echo(f"      resuming from {checkpoints[-1].name}")
        report = driver.train(config)
        if report.interrupted:
            raise PipelineInterrupted(f"training was interrupted; a checkpoint is saved in {out / 'checkpoints'}: "
                                      f"continue with 'wilson pipeline run --from train --run {self.folder.name}'")
        if then is not None:
            out, report = self._train_then(export, then, report)
        lineage = [json.loads(line) for line in
                   (self.folder / "export" / "lineage.jsonl").read_text(encoding="utf-8").splitlines()]
        added = self.registry.register(
            model_id, base=self.config.base, trainer=self.config.trainer, settings=settings,
            export_hash=export["export_hash"], manifest=export["manifest"], counts=export["counts"],
            path=str(out), pipeline_run=self.folder.name,
            examples=[(r["interaction_id"], r["split"], r["annotation_id"], r["label_version"]) for r in lineage],
        )
        metrics = {k: v for k, v in report.metrics.items() if isinstance(v, (int, float, str, bool))}
        return {"model_id": model_id, "out": str(out), "merged": report.merged, "adapter": report.adapter,
                "registered": added, "resumed_from": checkpoints[-1].name if resume else None,
                "metrics": metrics}

    def _train_then(self, export: dict[str, Any], then: dict[str, Any], first: Any) -> tuple[Path, Any]:
        """``[train.then]``: train again, from the first training's merged model."""
        from wilson_core.interfaces import TRAINERS
        from wilson_core.plugins import load_driver
        from wilson_core.training import build_config

        if not first.merged:
            raise PipelineError("[train.then] starts from the first training's merged model, and it wrote none "
                                "(remove merge = false)")
        out = self.folder / "train-then"
        data = export["files"][then["data"]]
        flags: dict[str, Any] = {"data": data["path"], "out": str(out), "base": str(first.merged),
                                 "force": out.exists() or None}
        if data.get("eval"):
            flags["eval_data"] = data["eval"]
        self.echo(f"      then {then['trainer']} on the {then['data']} export, from {first.merged}")
        config = build_config(then["trainer"], then["settings"], flags)
        driver = load_driver(TRAINERS, then["trainer"])()
        driver.check(config)
        report = driver.train(config)
        if report.interrupted:
            raise PipelineInterrupted(f"the second training was interrupted: run 'wilson pipeline run --from train "
                                      f"--run {self.folder.name}' again")
        return out, report

    # -- evaluate --------------------------------------------------------------

    def reference(self, model_id: str) -> tuple[str, str, str]:
        """The system the candidate is compared with: ``(registry id or base:NAME, label, provider spec)``."""
        live = self.registry.live()
        if live and live != model_id:
            entry = self.registry.get(live)
            return live, f"live {live}", f"{self.config.provider}:{entry.path}"
        if live == model_id:  # a re-run of the live model's own training: compare with the one before
            events = [e for e in self.registry.events(model_id) if e["action"] in ("promote", "rollback")]
            previous = events[-1]["previous_live"] if events else None
            if previous:
                entry = self.registry.get(previous)
                return previous, f"previous {previous}", f"{self.config.provider}:{entry.path}"
        return f"base:{self.config.base}", "base", f"{self.config.provider}:{self.config.base}"

    def _unseen_by(self, reference_id: str, cases: list[Any], path: Path) -> tuple[list[Any], int]:
        """The export's eval cases the reference model was not trained on (the split of an
        earlier round's export may differ), and how many were left out.  Lines map to the
        manifest's eval interaction ids one to one for exports of single interactions."""
        if reference_id.startswith("base:"):
            return cases, 0
        manifest = json.loads(Path(self.done("export")["files"]["sft"]["path"] + ".manifest.json")
                              .read_text(encoding="utf-8"))
        ids = manifest.get("interaction_ids", {}).get("eval", [])
        if manifest.get("options", {}).get("granularity") != "interaction" or len(ids) != len(cases):
            return cases, 0  # whole runs per line: no line-to-id mapping to filter by
        trained = {r["interaction_id"] for r in self.registry.examples(reference_id, "train")}
        kept = [case for case, iid in zip(cases, ids, strict=True) if iid not in trained]
        return kept, len(cases) - len(kept)

    def evaluate(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from wilson_core.evaluators.running import generate, load_cases, load_evaluators, score_sets
        from wilson_core.interfaces import EvalContext

        export, train = self.done("export"), self.done("train")
        model_id = train["model_id"]
        reference_id, reference_label, reference_spec = self.reference(model_id)
        if self.config.compare is not None:
            return self._compare(train, reference_id, reference_label)
        sets = {}
        dropped = 0
        for name, source in self.config.sets.items():
            path = export["files"]["sft"]["eval"] if source == EXPORT_SET else source
            if path is None:
                raise PipelineError(f"eval set {name!r}: the sft export has no eval split")
            sets[name] = load_cases(path, name, None if source == EXPORT_SET else self.config.limit)
            if source == EXPORT_SET:
                sets[name], dropped = self._unseen_by(reference_id, sets[name], Path(path))
                sets[name] = sets[name][:self.config.limit] if self.config.limit else sets[name]
                if not sets[name]:
                    raise PipelineError(f"eval set {name!r}: every held-out case was in the training data of "
                                        f"{reference_label}; add traffic or name a fixed eval file")
        if dropped:
            self.echo(f"      {dropped} held-out case(s) left out: {reference_label} was trained on them")
        systems = {"candidate": f"{self.config.provider}:{train['out']}", "reference": reference_spec}
        total = sum(len(c) for c in sets.values()) * len(systems)
        answers: dict[str, dict[str, list[dict[str, Any]]]] = {}
        pooled = [case for cases in sets.values() for case in cases]
        with tqdm(total=total, desc="      answers", unit="case", leave=False) as bar:
            for system, spec in systems.items():  # each system loaded once for every set
                found = generate(spec, pooled, max_tokens=self.config.max_tokens, progress=bar.update)
                answers[system], start = {}, 0
                for name, cases in sets.items():
                    answers[system][name] = found[start:start + len(cases)]
                    start += len(cases)
        folder = self.folder / "eval"
        folder.mkdir(exist_ok=True)
        with (folder / "answers.jsonl").open("w", encoding="utf-8") as handle:
            for name, cases in sets.items():
                for index, case in enumerate(cases):
                    handle.write(json.dumps({"set": name, "case": case.id, "messages": case.messages,
                                             "tools": case.tools, "upstream": case.reference,
                                             **{s: answers[s][name][index] for s in systems}},
                                            ensure_ascii=False) + "\n")
        evaluators = load_evaluators(self.config.evaluators)
        db = str(self.store.path)
        mine = score_sets(evaluators, sets, answers["candidate"],
                          EvalContext(db=db, model=model_id, baseline_model=reference_id, judge=self.config.judge),
                          baseline=answers["reference"])
        theirs = score_sets(evaluators, sets, answers["reference"],
                            EvalContext(db=db, model=reference_id, baseline_model=model_id, judge=self.config.judge),
                            baseline=answers["candidate"])
        self.registry.record_scores(model_id, self.folder.name, mine)
        self.registry.record_scores(reference_id, self.folder.name, theirs)

        def plain(scores: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
            return [{"set": s, "evaluator": e, "value": v.value, "count": v.count, "low": v.low, "high": v.high}
                    for (s, e), v in scores.items()]

        result = {"model_id": model_id, "reference": reference_id, "reference_label": reference_label,
                  "systems": systems, "candidate": plain(mine), "reference_scores": plain(theirs),
                  "higher_is_better": {n: type(e).higher_is_better for n, e in evaluators.items()}}
        (folder / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        if self.config.ab_review:
            from .ab import prepare

            made = prepare(self.store, self.folder, limit=self.config.ab_review)
            result["ab_review"] = made
            self.echo(f"      blind A/B review: {made['items']} new item(s) for 'wilson dashboard' (A/B tab)")
        return result

    def _compare(self, train: dict[str, Any], reference_id: str, reference_label: str) -> dict[str, Any]:
        """``[...eval] compare``: ``wilson eval`` scores the candidate against the reference
        (batched, each held-out line's constraint enforced and in free decoding); its report
        is ``eval/eval.json`` and its scores are the gate's."""
        from wilson_core.cli import main

        model_id = train["model_id"]
        if reference_id.startswith("base:"):
            reference_model = self.config.base
        else:
            entry = Path(str(self.registry.get(reference_id).path))
            reference_model = str(entry / "merged" if (entry / "merged").is_dir() else entry)
        folder = self.folder / "eval"
        folder.mkdir(exist_ok=True)
        report_file = folder / "eval.json"
        options = self.config.compare or {}
        args = ["eval"]
        for name, path in self.config.sets.items():
            args += ["--data", f"{name}={path}"]
        args += ["--base", reference_model, "--tuned", train["out"], "--json", str(report_file),
                 "--max-new-tokens", str(self.config.max_tokens),
                 "--log-likelihood" if options.get("log_likelihood", True) else "--no-log-likelihood",
                 "--batch-size", str(options.get("batch_size", 16)), "--samples", str(options.get("samples", 0))]
        if self.config.limit:
            args += ["--limit", str(self.config.limit)]
        from wilson_core.cli._common import wilson_command

        click.secho(f"      $ {wilson_command()} " + " ".join(args), dim=True)
        code = main(args)
        if code != 0:
            raise PipelineError(f"evaluate: 'wilson eval' exited with {code}")
        report = json.loads(report_file.read_text(encoding="utf-8"))
        mine, theirs = compared_scores(report, list(self.config.evaluators))
        self.registry.record_scores(model_id, self.folder.name, mine)
        self.registry.record_scores(reference_id, self.folder.name, theirs)
        result = {"model_id": model_id, "reference": reference_id, "reference_label": reference_label,
                  "systems": {"candidate": train["out"], "reference": reference_model}, "report": str(report_file),
                  "candidate": _plain(mine), "reference_scores": _plain(theirs),
                  "higher_is_better": dict.fromkeys(self.config.evaluators, True)}
        (folder / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return result

    # -- gate ------------------------------------------------------------------

    def gate(self) -> dict[str, Any]:
        from wilson_core.interfaces import EvalScore

        from .gate import decide

        evaluation = self.done("evaluate")
        model_id = evaluation["model_id"]

        def scores(rows: list[dict[str, Any]]) -> dict[tuple[str, str], EvalScore]:
            return {(r["set"], r["evaluator"]): EvalScore(value=r["value"], count=r["count"], low=r["low"],
                                                          high=r["high"]) for r in rows}

        decision = decide(self.config.gate, scores(evaluation["candidate"]), scores(evaluation["reference_scores"]),
                          evaluation["reference_label"], evaluation["higher_is_better"])
        data = decision.describe()
        previous = self.registry.live()
        if decision.promote:
            self.registry.record_gate(model_id, data)
            self.registry.promote(model_id, decision.reason)
        else:
            self.registry.record_gate(model_id, data)
        data.update(model_id=model_id, live_before=previous, live_after=self.registry.live())
        (self.folder / "gate.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return data

    # -- deploy ----------------------------------------------------------------

    def deploy(self) -> dict[str, Any]:
        from wilson_core.deployment import run_deployer
        from wilson_core.interfaces import DEPLOYERS, DeployConfig
        from wilson_core.plugins import load_driver

        gate, train = self.done("gate"), self.done("train")
        if not gate["promote"]:
            return {"skipped": "the gate refused the candidate: the live model stays", "targets": {}}
        model = train["merged"] or train["out"]
        targets = {}
        for name, settings in self.config.deployers.items():
            out = self.folder / "deploy" / name
            config = DeployConfig(model=str(model), out=str(out), force=True,
                                  **{k: v for k, v in settings.items() if k != "force"})
            # OUT/wilson-deploy.json and the deployment's card, as 'wilson deploy' writes them
            report = run_deployer(load_driver(DEPLOYERS, name)(), config)
            passed = report.passed if report.checks else None
            self.registry.record_deployment(train["model_id"], name, report.out, report.provider, passed)
            targets[name] = {"out": report.out, "provider": report.provider, "passed": passed,
                             "files": list(report.files)}
            if report.checks and not report.passed:
                raise PipelineError(f"deployer {name}: verification failed; artefacts kept in {out}")
            self.echo(f"      {name}: {report.out}" + (f" ({report.provider})" if report.provider else ""))
        return {"targets": targets}


def _plain(scores: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    return [{"set": s, "evaluator": e, "value": v.value, "count": v.count, "low": v.low, "high": v.high}
            for (s, e), v in scores.items()]


def compared_scores(report: dict[str, Any], evaluators: list[str]) -> tuple[dict[tuple[str, str], Any], ...]:
    """``wilson eval``'s report -> the (tuned, base) ``{(set, evaluator): EvalScore}``.

    Each held-out file is a set and ``all`` pools them.  When the lines carry the app's
    constraint (structured output), the sets are scored with it enforced, as the app
    runs, and ``SET/free`` holds the same set in free decoding.
    """
    from wilson_core.interfaces import EvalScore

    free = {**{name: entry["models"] for name, entry in report.get("subsets", {}).items()}, "all": report["models"]}
    constrained = report.get("constrained")
    tables = free
    if constrained:
        tables = {**{name: entry["models"] for name, entry in constrained["subsets"].items()},
                  "all": constrained["models"], **{name + FREE: models for name, models in free.items()}}
    found: dict[str, dict[tuple[str, str], Any]] = {"tuned": {}, "base": {}}
    for set_name, models in tables.items():
        for label, scores in found.items():
            summary = models[label]
            for evaluator in evaluators:
                value = summary.get(COMPARE_METRICS[evaluator])
                count = summary.get("tool_examples" if evaluator == "tool-call" else "examples", 0)
                scores[(set_name, evaluator)] = EvalScore(value=value, count=count if value is not None else 0)
    return found["tuned"], found["base"]


DESCRIPTIONS = {
    "export": "export {formats}",
    "train": "train {trainer} on {base}",
    "evaluate": "evaluate on {sets} with {evaluators}",
    "gate": "gate: {metric} on {set}, margin {margin}, tolerance {tolerance}",
    "deploy": "deploy {deployers}",
}


def describe_stage(config: PipelineConfig, stage: str) -> str:
    return DESCRIPTIONS[stage].format(
        formats=", ".join(config.formats), trainer=config.trainer, base=config.base,
        sets=", ".join(config.sets), evaluators=", ".join(config.evaluators), metric=config.gate.metric,
        set=config.gate.set, margin=config.gate.margin, tolerance=config.gate.tolerance,
        deployers=", ".join(config.deployers) or "(none configured)")


def run_pipeline(config: PipelineConfig, store: Any, *, start: str = "export", run_name: str | None = None,
                 echo: Callable[[str], None] = click.echo, stop: str = STAGES[-1]) -> Run:
    """Run the stages from ``start`` to ``stop``; a new run folder unless ``start`` continues one.

    :raises PipelineError: a stage failed (the state keeps the stages done before it).
    """
    if start not in STAGES:
        raise PipelineError(f"--from {start!r}: choose one of {', '.join(STAGES)}")
    if stop not in STAGES or STAGES.index(stop) < STAGES.index(start):
        raise PipelineError(f"--to {stop!r}: choose one of {', '.join(STAGES[STAGES.index(start):])} "
                            f"(a stage from --from {start} on)")
    if start == "export" and run_name is None:
        folder = new_run_folder(config.runs)
    else:
        folders = run_folders(config.runs)
        if run_name is not None:
            folder = config.runs / run_name
            if not (folder / "state.json").is_file():
                names = ", ".join(f.name for f in folders) or "none"
                raise PipelineError(f"no pipeline run {run_name!r} in {config.runs} (runs: {names})")
        elif not folders:
            raise PipelineError(f"--from {start}: there is no earlier run in {config.runs} to continue")
        else:
            folder = folders[-1]
    run = Run(config, folder, store, echo)
    run.resuming = {start}
    for stage in STAGES[:STAGES.index(start)]:
        run.done(stage)
    for number, stage in enumerate(STAGES[STAGES.index(start):STAGES.index(stop) + 1], STAGES.index(start) + 1):
        click.secho(f"[{number}/{len(STAGES)}] {describe_stage(config, stage)}", bold=True, fg="cyan")
        started = time.perf_counter()
        result = getattr(run, stage)()
        result["seconds"] = round(time.perf_counter() - started, 1)
        run.finish(stage, result)
        echo(f"      done in {result['seconds']:.1f} s")
    return run
