"""``wilson eval``: compare a base model and a tuned one on held-out conversations.

Each example of an sft-format JSONL file (``messages`` + ``tools``) is cut before
its last assistant message; both models answer the context (greedy) and are scored
against that reference:

- exact match (whitespace and case normalised; tool calls compared as name + arguments);
- token F1 of the answer text (tool calls rendered as JSON);
- tool-call accuracy over examples whose reference calls tools: right names, right
  names *and* arguments;
- average log-likelihood per token of the reference answer (teacher forcing, the
  assistant tokens only): higher is better, and it needs no generation luck;
- optionally an LLM judge (any facade provider) scoring each answer 1-5.

Several files can be scored in one run (each model loaded once); each gets its own
scores beside the pooled ones. Answers and log-likelihoods are computed in padded
batches of similar-length examples, the tokens all rows share (system prompt, tool
schemas) run once; the results are those of one example at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.evaluators.answers import normal as _normal
from wilson_core.evaluators.answers import token_f1 as token_f1
from wilson_core.interfaces import TrainError
from wilson_core.messages import parse_arguments
from wilson_core.training import check_data

METRICS = ("exact_match", "token_f1", "tool_name_accuracy", "tool_call_accuracy", "avg_log_likelihood", "judge_score",
           "constraint_valid")


@frozen
class Example:
    context: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    reference: dict[str, Any]
    #: the app's request parameters (a ``"params"`` object on the line): a structured-output
    #: constraint there (``guided_choice``, ``response_format``, ``tool_choice``) is scored too.
    params: dict[str, Any] | None = None

    def constraint(self) -> Any:
        from wilson_core.constraints import ConstraintError, from_params

        try:
            return from_params(self.params, self.tools)
        except ConstraintError as exc:
            raise TrainError(f"an example's params: {exc}") from None


@frozen
class Answer:
    content: str
    calls: tuple[tuple[str, str], ...]  # (name, canonical JSON arguments)


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """Examples from an sft export: context up to the last assistant turn, and that turn."""
    check_data(path, "sft", "wilson eval")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row["messages"]
            last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
            tools = row.get("tools")
            if isinstance(tools, str):
                tools = json.loads(tools)
            params = row.get("params") if isinstance(row.get("params"), dict) else None
            examples.append(Example(context=messages[:last], tools=tools or None, reference=messages[last],
                                    params=params))
            if limit and len(examples) >= limit:
                break
    return examples


def answer_of(message: dict[str, Any]) -> Answer:
    calls = []
    for call in message.get("tool_calls") or ():
        fn = call.get("function", call)
        arguments, raw = parse_arguments(fn.get("arguments"))
        calls.append((str(fn.get("name")), raw if raw is not None else json.dumps(arguments, sort_keys=True)))
    return Answer(content=(message.get("content") or "").strip(), calls=tuple(calls))


def answer_text(answer: Answer) -> str:
    parts = [answer.content] + [f"{name} {args}" for name, args in answer.calls]
    return " ".join(p for p in parts if p)


def exact_match(prediction: Answer, reference: Answer) -> float:
    same_text = _normal(prediction.content) == _normal(reference.content)
    return float(same_text and sorted(prediction.calls) == sorted(reference.calls))


def tool_scores(prediction: Answer, reference: Answer) -> tuple[float, float]:
    """(names right, names and arguments right) for a reference that calls tools."""
    names = sorted(n for n, _ in prediction.calls) == sorted(n for n, _ in reference.calls)
    return float(names), float(sorted(prediction.calls) == sorted(reference.calls))


def reference_tokens(tokenizer: Any, example: Example) -> tuple[list[int], list[int]]:
    """Token ids of context + reference, and the positions of the reference answer's
    assistant tokens (the last assistant turn only)."""
    from .data import encode_conversation

    ids, mask = encode_conversation(tokenizer, [*example.context, example.reference], example.tools)
    prefix, _ = encode_conversation(tokenizer, example.context, example.tools) if example.context else ([], [])
    return ids, [i for i, m in enumerate(mask) if m and i >= len(prefix)]


def reference_log_likelihoods(local: Any, examples: list[Example], batch_size: int = 16,
                              max_batch_tokens: int = 4096,
                              progress: Callable[[int], None] | None = None) -> list[float]:
    """Mean log-probability per token of each reference answer's assistant tokens (NaN when
    it has none), teacher-forced in right-padded batches of at most ``batch_size`` rows and
    ``max_batch_tokens`` padded tokens (the logits of a batch are held in memory); the
    leading tokens all rows of a batch share are run once (see ``LocalModel.greedy_tokens``)."""
    import torch  # noqa: TID251 - lazy import

    from .provider import MIN_SHARED_PREFIX, shared_prefix_length

    encoded = [reference_tokens(local.tokenizer, example) for example in examples]
    results = [float("nan")] * len(examples)
    pad = local.tokenizer.pad_token_id
    device = local.model.device
    for chunk in _batches([len(ids) for ids, _ in encoded], batch_size, max_batch_tokens):
        rows = [encoded[i][0] for i in chunk]
        # the leading tokens all rows share run once (a shared cache), up to the first scored token
        shared = shared_prefix_length(rows) if len(chunk) > 1 else 0
        firsts = [min(p for p in encoded[i][1] if p > 0) for i in chunk if any(p > 0 for p in encoded[i][1])]
        shared = min([shared, *(first - 1 for first in firsts)])
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        width = max(len(r) for r in rows) - shared
        ids = torch.tensor([r[shared:] + [pad] * (width - len(r) + shared) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r) + shared) for r in rows], device=device)
        # logits only where a reference token is predicted (the lm_head over a large
        # vocabulary is a fifth of the work of a small model)
        keep = torch.zeros(len(chunk), width, dtype=torch.bool, device=device)
        targets: list[int] = []
        for row, index in enumerate(chunk):
            tokens, positions = encoded[index]
            scored = [p for p in positions if p > 0]
            keep[row, [p - 1 - shared for p in scored]] = True
            targets += [tokens[p] for p in scored]
        token_logprobs: list[float] = []
        if targets:
            extra: dict[str, Any] = {"logits_to_keep": keep} if _keeps_logits(local.model) else {}
            with torch.inference_mode():
                if shared:
                    extra["cache"] = local.prefix_cache(rows[0][:shared], len(chunk))
                logits = local.model(input_ids=ids, attention_mask=mask, **extra).logits
                # all positions (B, width, V), or only the kept ones, flattened (N, V)
                full = logits.dim() == 3 and tuple(logits.shape[:2]) == tuple(keep.shape)
                picked = logits[keep] if full else logits.reshape(-1, logits.shape[-1])
                if picked.shape[0] != len(targets):
                    raise TrainError(f"expected logits at {len(targets)} positions, the model gave {picked.shape[0]}")
                logprobs = torch.log_softmax(picked.float(), dim=-1)
                token_logprobs = logprobs.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0].tolist()
        offset = 0
        for index in chunk:
            positions = encoded[index][1]
            count = sum(1 for p in positions if p > 0)
            if positions:  # mean over the answer's tokens (the very first token has no prediction)
                results[index] = sum(token_logprobs[offset:offset + count]) / len(positions)
            offset += count
        if progress:
            progress(len(chunk))
    return results


def _keeps_logits(model: Any) -> bool:
    """Whether ``model`` (or the model inside a PEFT wrapper) takes ``logits_to_keep``."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def reference_log_likelihood(local: Any, example: Example) -> float:
    """Mean log-probability per token of the reference answer's assistant tokens."""
    return reference_log_likelihoods(local, [example])[0]


def _batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped by similar length (little padding): at most ``batch_size`` per group,
    and at most ``max_batch_tokens`` once padded (a longer single row still gets its own group)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for index in order:
        group = groups[-1] if groups else None
        fits = group is not None and len(group) < batch_size and (
            max_batch_tokens is None or (len(group) + 1) * lengths[index] <= max_batch_tokens
        )
        if fits and group is not None:
            group.append(index)
        else:
            groups.append([index])
    return groups


def parse_answer(text: str) -> Answer:
    """A generated text -> content + canonical tool calls (``<tool_call>`` tags parsed)."""
    from wilson_core.messages import parse_tagged_tool_calls

    content, calls = parse_tagged_tool_calls(text)
    return Answer(
        content=content.strip(),
        calls=tuple((c.name, c.raw_arguments if c.malformed else json.dumps(c.arguments, sort_keys=True)) for c in calls),
    )


def generate_answers(local: Any, examples: list[Example], max_new_tokens: int = 128, batch_size: int = 16,
                     progress: Callable[[int], None] | None = None, *, constrained: bool = False) -> list[Answer]:
    """Greedy answers of one loaded model, in example order (batched by prompt length);
    ``constrained``: each answer obeys its example's constraint (see :attr:`Example.params`)."""
    prompts = [local.prompt_ids(example.context, example.tools) for example in examples]
    constraints = [example.constraint() for example in examples] if constrained else None
    answers: list[Answer | None] = [None] * len(examples)
    for chunk in _batches([len(p) for p in prompts], batch_size):
        chosen = [constraints[i] for i in chunk] if constraints else None
        outputs = local.generate_from_ids([prompts[i] for i in chunk], max_new_tokens, chosen)
        for index, (text, _, _) in zip(chunk, outputs, strict=True):
            answers[index] = parse_answer(text)
        if progress:
            progress(len(chunk))
    return [a for a in answers if a is not None]


JUDGE_PROMPT = (
    "You grade answers of an AI assistant against a reference answer. Reply with one "
    "integer from 1 (wrong or useless) to 5 (as good as the reference) and nothing else."
)


def judge_score(judge: Any, example: Example, prediction: Answer, reference: Answer) -> float | None:
    last_user = next((m.get("content") for m in reversed(example.context) if m.get("role") == "user"), "")
    reply = judge.chat(
        [
            {"role": "system", "content": JUDGE_PROMPT},
            {"role": "user", "content": f"Question:\n{last_user}\n\nReference answer:\n{answer_text(reference)}\n\n"
                                        f"Answer to grade:\n{answer_text(prediction)}"},
        ],
        call_type="eval-judge",
        temperature=0,
    )
    match = re.search(r"[1-5]", reply.content or "")
    return float(match.group()) if match else None


def example_metrics(prediction: Answer, reference: Answer, constraint: Any = None) -> dict[str, float]:
    """The generation metrics of one answer (tool metrics only when the reference calls tools;
    ``constraint_valid`` only when the example has a constraint)."""
    metrics = {
        "exact_match": exact_match(prediction, reference),
        "token_f1": token_f1(answer_text(prediction), answer_text(reference)),
    }
    if constraint is not None:
        metrics["constraint_valid"] = float(obeys(constraint, prediction))
    if reference.calls:
        metrics["tool_name_accuracy"], metrics["tool_call_accuracy"] = tool_scores(prediction, reference)
    return metrics


def obeys(constraint: Any, answer: Answer) -> bool:
    """Whether a generated answer obeys a structured-output constraint."""
    from wilson_core.constraints import check
    from wilson_core.records import ToolCall

    calls = [ToolCall(id="x", name=name, arguments=json.loads(args) if _is_object(args) else {},
                      raw_arguments=None if _is_object(args) else args) for name, args in answer.calls]
    return check(constraint, answer.content, calls) is None


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def score_examples(local: Any, examples: list[Example], max_new_tokens: int = 128, judge: Any = None,
                   progress: Callable[[int], None] | None = None, *, batch_size: int = 16,
                   log_likelihood: bool = True, constrained: bool = False) -> list[tuple[Answer, dict[str, float]]]:
    """Each example's answer and metrics (a metric left out when it does not apply)."""
    answers = generate_answers(local, examples, max_new_tokens, batch_size, progress, constrained=constrained)
    likelihoods = (reference_log_likelihoods(local, examples, batch_size, progress=progress)
                   if log_likelihood else [float("nan")] * len(examples))
    records = []
    for example, prediction, ll in zip(examples, answers, likelihoods, strict=True):
        reference = answer_of(example.reference)
        metrics = example_metrics(prediction, reference, example.constraint())
        if ll == ll:  # not NaN
            metrics["avg_log_likelihood"] = ll
        if judge is not None:
            score = judge_score(judge, example, prediction, reference)
            if score is not None:
                metrics["judge_score"] = score
        records.append((prediction, metrics))
    return records


def summarise(metrics: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean of each metric over the examples it applies to (``None`` when none)."""
    scores: dict[str, float | None] = {}
    for name in METRICS:
        values = [m[name] for m in metrics if name in m]
        scores[name] = sum(values) / len(values) if values else None
    scores["examples"] = len(metrics)
    scores["tool_examples"] = sum(1 for m in metrics if "tool_name_accuracy" in m)
    return scores


def evaluate_model(local: Any, examples: list[Example], max_new_tokens: int = 128,
                   judge: Any = None, progress: Callable[[int], None] | None = None, *,
                   batch_size: int = 16, log_likelihood: bool = True) -> tuple[dict[str, float | None], list[Answer]]:
    """Scores of one loaded model (``LocalModel``) and its answers, in example order."""
    records = score_examples(local, examples, max_new_tokens, judge, progress,
                             batch_size=batch_size, log_likelihood=log_likelihood)
    return summarise([m for _, m in records]), [a for a, _ in records]


def data_files(values: str | Path | Sequence[str | Path]) -> list[tuple[str, str]]:
    """``--data`` values -> ``(subset name, path)`` pairs.

    A value is a file (named by its stem: ``held-out.jsonl`` -> ``held-out``) or
    ``NAME=FILE``; a repeated name gets ``-2``, ``-3``... appended.
    """
    items = [values] if isinstance(values, (str, Path)) else list(values)
    pairs: list[tuple[str, str]] = []
    taken: set[str] = set()
    for value in items:
        text = str(value)
        name, _, path = text.partition("=")
        if Path(text).exists() or not path or not name or "/" in name or "\\" in name:
            name, path = Path(text).stem, text
        unique, number = name, 2
        while unique in taken:
            unique, number = f"{name}-{number}", number + 1
        taken.add(unique)
        pairs.append((unique, path))
    return pairs


def compare(data: str | Path | Sequence[str | Path], base: str, tuned: str, *, limit: int | None = None,
            max_new_tokens: int = 128, judge_provider: str | None = None, samples: int = 0,
            batch_size: int = 16, log_likelihood: bool = True) -> dict[str, Any]:
    """Evaluate ``base`` and ``tuned`` on one or several files (see :func:`data_files`; ``limit``
    applies per file), loading each model once; the report ``wilson eval`` prints and writes."""
    import time

    from tqdm.auto import tqdm

    from .base import resolve_base
    from .provider import LocalModel, resolve_model_folder

    if batch_size < 1:
        raise TrainError(f"--batch-size must be at least 1, not {batch_size}")
    files = data_files(data)
    subsets: list[tuple[str, str, list[Example]]] = []
    for name, path in files:
        if not Path(path).is_file():
            raise TrainError(f"--data {path}: no such file")
        found = load_examples(path, limit)
        if not found:
            raise TrainError(f"{path}: no examples")
        subsets.append((name, path, found))
    examples = [example for _, _, found in subsets for example in found]
    names = [name for name, _, found in subsets for _ in found]
    resolve_base(base)
    tuned_path = Path(tuned)
    if not tuned_path.exists():
        raise TrainError(f"--tuned {tuned}: no such folder")
    judge = None
    if judge_provider:
        from wilson_core import LLM

        judge = LLM(judge_provider, call_type="eval-judge")
    paths = [path for _, path in files]
    report: dict[str, Any] = {"data": paths[0] if len(paths) == 1 else paths, "base": base, "tuned": str(tuned),
                              "models": {}, "subsets": {}}
    records: dict[str, list[tuple[Answer, dict[str, float]]]] = {}
    constrained: dict[str, list[tuple[Answer, dict[str, float]]]] = {}
    constrained_too = any(example.constraint() is not None for example in examples)
    timing: dict[str, dict[str, float]] = {}
    for label, name in (("base", base), ("tuned", tuned)):
        started = time.perf_counter()
        model_name, adapter = (name, None) if label == "base" else resolve_model_folder(name)
        local = LocalModel(model_name, adapter=adapter)
        loaded = time.perf_counter()
        total = len(examples) * (2 if log_likelihood else 1)
        with tqdm(total=total, desc=f"eval {label}", unit="ex", leave=False) as bar:
            records[label] = score_examples(local, examples, max_new_tokens, judge, bar.update,
                                            batch_size=batch_size, log_likelihood=log_likelihood)
        if constrained_too:  # the same answers again, each obeying its example's constraint
            with tqdm(total=len(examples), desc=f"eval {label} constrained", unit="ex", leave=False) as bar:
                constrained[label] = score_examples(local, examples, max_new_tokens, None, bar.update,
                                                    batch_size=batch_size, log_likelihood=False, constrained=True)
        timing[label] = {"load_s": round(loaded - started, 2), "eval_s": round(time.perf_counter() - loaded, 2)}
        report["models"][label] = summarise([m for _, m in records[label]])
        del local
    rows = [
        {
            "subset": subset,
            "question": next((m.get("content") for m in reversed(example.context) if m.get("role") == "user"), ""),
            "reference": answer_text(answer_of(example.reference)),
            "base": answer_text(a),
            "tuned": answer_text(b),
        }
        for subset, example, (a, _), (b, _) in zip(names, examples, records["base"], records["tuned"], strict=True)
    ]
    for name, path, _ in subsets:
        chosen = [i for i, subset in enumerate(names) if subset == name]
        report["subsets"][name] = {
            "data": path,
            "models": {label: summarise([records[label][i][1] for i in chosen]) for label in ("base", "tuned")},
            "disagreements": sum(1 for i in chosen if rows[i]["base"] != rows[i]["tuned"]),
        }
    if constrained:
        report["constrained"] = {
            "models": {label: summarise([m for _, m in constrained[label]]) for label in ("base", "tuned")},
            "subsets": {name: {"models": {label: summarise([constrained[label][i][1] for i, subset in enumerate(names)
                                                            if subset == name]) for label in ("base", "tuned")}}
                        for name, _, _ in subsets},
        }
        for row, (a, _), (b, _) in zip(rows, constrained["base"], constrained["tuned"], strict=True):
            row["base_constrained"], row["tuned_constrained"] = answer_text(a), answer_text(b)
    report["disagreements"] = sum(1 for row in rows if row["base"] != row["tuned"])
    report["samples"] = _spread([[r for r in rows if r["subset"] == name and r["base"] != r["tuned"]]
                                 for name, _, _ in subsets], samples)
    report["answers"] = rows
    report["settings"] = {"limit": limit, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
                          "log_likelihood": log_likelihood, "judge": judge_provider}
    report["timing"] = timing
    return report


def _spread(groups: list[list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """Up to ``count`` rows taken in turn from each group (every subset gets its samples)."""
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < count and any(depth < len(g) for g in groups):
        chosen.extend(g[depth] for g in groups if depth < len(g))
        depth += 1
    return chosen[:count]


def _metric_table(models: dict[str, dict[str, Any]]) -> list[str]:
    base, tuned = models["base"], models["tuned"]
    lines = [f"{'metric':<22}{'base':>10}{'tuned':>10}{'delta':>10}", "-" * 52]
    for name in METRICS:
        a, b = base.get(name), tuned.get(name)
        if a is None and b is None:
            continue
        fa = f"{a:.3f}" if a is not None else "-"
        fb = f"{b:.3f}" if b is not None else "-"
        delta = f"{b - a:+.3f}" if a is not None and b is not None else ""
        lines.append(f"{name:<22}{fa:>10}{fb:>10}{delta:>10}")
    lines.append(f"{'examples':<22}{base['examples']:>10}{tuned['examples']:>10}")
    if base.get("tool_examples"):
        lines.append(f"{'with tool calls':<22}{base['tool_examples']:>10}{tuned['tool_examples']:>10}")
    return lines


def format_table(report: dict[str, Any]) -> str:
    """The metric table; with several data files one table per file, the pooled one and a
    summary with one row per file and an ``overall`` row."""
    subsets = report.get("subsets") or {}
    constrained = report.get("constrained")
    if len(subsets) <= 1:
        lines = _metric_table(report["models"])
        if constrained:
            lines += ["", "== with the constraint of each example (structured output)", *_metric_table(constrained["models"])]
        return "\n".join(lines)
    lines: list[str] = []
    for name, subset in subsets.items():
        lines += [f"== {name} ({subset['data']})", *_metric_table(subset["models"]), ""]
    lines += ["== overall (all files)", *_metric_table(report["models"]), ""]
    return "\n".join(lines + format_summary(report))


def format_summary(report: dict[str, Any]) -> list[str]:
    """One row per file and an ``overall`` row: exact match (and log-likelihood) base -> tuned."""
    rows = [(name, s["models"]) for name, s in (report.get("subsets") or {}).items()] + [("overall", report["models"])]
    constrained = report.get("constrained")
    if constrained:
        rows += [(f"{name} (constrained)", s["models"]) for name, s in constrained["subsets"].items()]
        rows.append(("overall (constrained)", constrained["models"]))
    width = max(12, *(len(name) + 2 for name, _ in rows))
    with_ll = report["models"]["base"].get("avg_log_likelihood") is not None
    header = f"{'subset':<{width}}{'examples':>9}{'exact base':>12}{'tuned':>8}{'delta':>8}"
    if with_ll:
        header += f"{'loglik base':>13}{'tuned':>8}"
    lines = [header, "-" * len(header)]
    for name, models in rows:
        base, tuned = models["base"], models["tuned"]
        line = (f"{name:<{width}}{base['examples']:>9}{base['exact_match']:>12.3f}{tuned['exact_match']:>8.3f}"
                f"{tuned['exact_match'] - base['exact_match']:>+8.3f}")
        if with_ll:
            a, b = base.get("avg_log_likelihood"), tuned.get("avg_log_likelihood")
            line += f"{a:>13.3f}" if a is not None else f"{'-':>13}"
            line += f"{b:>8.3f}" if b is not None else f"{'-':>8}"
        lines.append(line)
    return lines
