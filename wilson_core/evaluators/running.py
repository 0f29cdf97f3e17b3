"""Eval sets, answers and scores: what ``wilson eval --evaluator`` and the pipeline run.

An eval set is an sft-format JSONL file (``messages`` + optional ``tools``): each line is
cut before its last assistant message, which becomes the reference.  The held-out sets
of a pipeline are the eval split of its export (by run: no conversation is split) and
any fixed files it names.  Answers come from any facade provider driver
(``transformers:FOLDER``, ``llamacpp:FILE.gguf``, ``openai:MODEL``, ...), called
directly so that evaluation is not captured as the app's traffic; greedy by default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wilson_core.interfaces import (
    EVALUATORS,
    EvalCase,
    EvalContext,
    EvalScore,
    Evaluator,
    EvaluatorError,
)

from .answers import message_of


def load_cases(path: str | Path, subset: str, limit: int | None = None) -> list[EvalCase]:
    """The cases of an sft JSONL file (ids ``FILE:LINE``).

    :raises EvaluatorError: the file is missing, a line is not JSON or has no assistant turn.
    """
    file = Path(path)
    if not file.is_file():
        raise EvaluatorError(f"eval set {subset!r}: no such file {file}")
    cases = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                messages = row["messages"]
                last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise EvaluatorError(
                    f"{file}:{number}: an eval set line must be an sft object with 'messages' "
                    "ending in an assistant answer") from None
            tools = row.get("tools")
            if isinstance(tools, str):
                tools = json.loads(tools)
            cases.append(EvalCase(id=f"{file.name}:{number}", messages=list(messages[:last]), tools=tools or None,
                                  reference=dict(messages[last]), subset=subset))
            if limit and len(cases) >= limit:
                break
    if not cases:
        raise EvaluatorError(f"eval set {subset!r}: {file} has no examples")
    return cases


def load_evaluators(configured: Mapping[str, Mapping[str, Any]]) -> dict[str, Evaluator]:
    """``{name: options}`` -> built evaluators (only those named are imported).

    :raises PluginError: an unknown name (the message lists the installed ones).
    :raises EvaluatorError: bad options (the message names the key).
    """
    from wilson_core.plugins import load_driver

    built = {}
    for name, options in configured.items():
        cls = load_driver(EVALUATORS, name)
        try:
            built[name] = cls(**dict(options))
        except EvaluatorError as exc:
            raise EvaluatorError(f"evaluator {name!r}: {exc}") from None
    return built


def provider_for(spec: str, options: Mapping[str, Any] | None = None) -> Any:
    """A provider driver from ``NAME:MODEL`` (not wrapped in the facade: nothing is captured)."""
    from wilson_core.interfaces import PROVIDERS
    from wilson_core.plugins import load_driver

    name, sep, model = spec.partition(":")
    if not sep:
        raise EvaluatorError(f"a system to evaluate is NAME:MODEL (e.g. transformers:out/merged), got {spec!r}")
    return load_driver(PROVIDERS, name)(model, **dict(options or {}))


def generate(spec: str, cases: Sequence[EvalCase], *, max_tokens: int = 128,
             progress: Callable[[int], None] | None = None,
             options: Mapping[str, Any] | None = None, batch_size: int = 16) -> list[dict[str, Any]]:
    """Greedy answers of the system ``spec`` (provider ``options``) to each case, as assistant messages.

    A provider with a ``chat_batch(conversations, tools, params)`` method (one list of
    responses, in order) answers ``batch_size`` cases per call; others one by one.
    """
    provider = provider_for(spec, options)
    params = {"temperature": 0, "max_tokens": max_tokens}
    answers: list[dict[str, Any]] = []
    batch = getattr(provider, "chat_batch", None)
    try:
        if callable(batch):
            for start in range(0, len(cases), batch_size):
                chunk = cases[start:start + batch_size]
                responses = batch([list(c.messages) for c in chunk], [c.tools for c in chunk], params)
                answers += [message_of(r) for r in responses]
                if progress:
                    progress(len(chunk))
        else:
            for case in cases:
                answers.append(message_of(provider.chat(list(case.messages), case.tools, params)))
                if progress:
                    progress(1)
    finally:
        provider.close()
    return answers


def score_sets(evaluators: Mapping[str, Evaluator], sets: Mapping[str, Sequence[EvalCase]],
               answers: Mapping[str, Sequence[dict[str, Any]]], context: EvalContext,
               baseline: Mapping[str, Sequence[dict[str, Any]]] | None = None) -> dict[tuple[str, str], EvalScore]:
    """``{(set, evaluator): score}`` for every set and evaluator, plus ``("all", evaluator)``
    over the cases of every set pooled."""
    import attrs

    scores: dict[tuple[str, str], EvalScore] = {}
    pooled_cases = [c for cases in sets.values() for c in cases]
    pooled_answers = [a for name in sets for a in answers[name]]
    pooled_baseline = [a for name in sets for a in baseline[name]] if baseline is not None else None
    for evaluator_name, evaluator in evaluators.items():
        for set_name, cases in sets.items():
            ctx = attrs.evolve(context, baseline=list(baseline[set_name]) if baseline is not None else None)
            scores[(set_name, evaluator_name)] = evaluator.evaluate(list(cases), list(answers[set_name]), ctx)
        if len(sets) > 1:
            ctx = attrs.evolve(context, baseline=pooled_baseline)
            scores[("all", evaluator_name)] = evaluator.evaluate(pooled_cases, pooled_answers, ctx)
        else:
            scores[("all", evaluator_name)] = scores[(next(iter(sets)), evaluator_name)]
    return scores


def format_scores(columns: Mapping[str, Mapping[tuple[str, str], EvalScore]]) -> str:
    """A table: one row per (set, evaluator), one column per system, with 95% intervals."""
    keys = sorted({k for scores in columns.values() for k in scores}, key=lambda k: (k[0] == "all", k))
    names = list(columns)
    header = f"{'set':<14}{'evaluator':<20}" + "".join(f"{n[:26]:>28}" for n in names)
    lines = [header, "-" * len(header)]
    for key in keys:
        cells = []
        for name in names:
            score = columns[name].get(key)
            if score is None or score.value is None:
                cells.append(f"{'-':>28}")
            else:
                interval = f" [{score.low:.2f},{score.high:.2f}]" if score.low is not None else ""
                cells.append(f"{f'{score.value:.3f}{interval} n={score.count}':>28}")
        lines.append(f"{key[0]:<14}{key[1]:<20}" + "".join(cells))
    return "\n".join(lines)


def parse_evaluator_args(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--evaluator NAME`` or ``NAME:{"key": value}`` (options as a JSON object) -> ``{name: options}``."""
    configured: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, raw = value.partition(":")
        options: Any = {}
        if sep:
            try:
                options = json.loads(raw)
            except ValueError:
                options = None
            if not isinstance(options, dict):
                raise EvaluatorError(f"--evaluator {value!r}: options after ':' must be a JSON object, "
                                     'e.g. label-set:{"labels": ["a", "b"]}')
        configured[name.strip()] = {k.replace("-", "_"): v for k, v in options.items()}
    return configured


def evaluate_files(files: Sequence[tuple[str, str]], systems: Mapping[str, str],
                   configured: Mapping[str, Mapping[str, Any]], *, limit: int | None = None,
                   max_tokens: int = 128, judge: str | None = None) -> dict[str, Any]:
    """Score each system (``{label: provider spec}``) on each file with the named evaluators.

    The first system is the baseline of the others (for evaluators that compare).  Returns
    ``{"scores": {label: [{set, evaluator, value, count, low, high}]}, "table": text}``.
    """
    evaluators = load_evaluators(configured)
    sets = {name: load_cases(path, name, limit) for name, path in files}
    pooled = [case for cases in sets.values() for case in cases]
    answers: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, spec in systems.items():
        found = generate(spec, pooled, max_tokens=max_tokens)
        answers[label], start = {}, 0
        for name, cases in sets.items():
            answers[label][name] = found[start:start + len(cases)]
            start += len(cases)
    labels = list(systems)
    columns = {}
    for label in labels:
        other = labels[0] if label != labels[0] else (labels[1] if len(labels) > 1 else None)
        columns[label] = score_sets(evaluators, sets, answers[label], EvalContext(judge=judge),
                                    baseline=answers[other] if other else None)
    return {
        "scores": {label: [{"set": s, "evaluator": e, "value": v.value, "count": v.count, "low": v.low,
                            "high": v.high} for (s, e), v in scores.items()] for label, scores in columns.items()},
        "table": format_scores(columns),
    }
