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
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.interfaces import TrainError
from wilson_core.messages import parse_arguments
from wilson_core.training import check_data

METRICS = ("exact_match", "token_f1", "tool_name_accuracy", "tool_call_accuracy", "avg_log_likelihood", "judge_score")


@frozen
class Example:
    context: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    reference: dict[str, Any]


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
            examples.append(Example(context=messages[:last], tools=tools or None, reference=messages[last]))
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


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def answer_text(answer: Answer) -> str:
    parts = [answer.content] + [f"{name} {args}" for name, args in answer.calls]
    return " ".join(p for p in parts if p)


def exact_match(prediction: Answer, reference: Answer) -> float:
    same_text = _normal(prediction.content) == _normal(reference.content)
    return float(same_text and sorted(prediction.calls) == sorted(reference.calls))


_TOKEN = re.compile(r"\w+|[^\w\s]")


def token_f1(prediction: str, reference: str) -> float:
    """F1 over word and punctuation tokens (case-folded); 1.0 when both are empty."""
    pred = _TOKEN.findall(prediction.casefold())
    ref = _TOKEN.findall(reference.casefold())
    if not pred and not ref:
        return 1.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def tool_scores(prediction: Answer, reference: Answer) -> tuple[float, float]:
    """(names right, names and arguments right) for a reference that calls tools."""
    names = sorted(n for n, _ in prediction.calls) == sorted(n for n, _ in reference.calls)
    return float(names), float(sorted(prediction.calls) == sorted(reference.calls))


def reference_log_likelihood(local: Any, example: Example) -> float:
    """Mean log-probability per token of the reference answer's assistant tokens."""
    import torch  # noqa: TID251 - lazy import

    from .data import encode_conversation

    messages = [*example.context, example.reference]
    ids, mask = encode_conversation(local.tokenizer, messages, example.tools)
    prefix, _ = encode_conversation(local.tokenizer, example.context, example.tools) if example.context else ([], [])
    # keep only the last assistant turn's tokens
    positions = [i for i, m in enumerate(mask) if m and i >= len(prefix)]
    if not positions:
        return float("nan")
    inputs = torch.tensor([ids], device=local.model.device)
    with torch.no_grad():
        logits = local.model(input_ids=inputs).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    total = sum(float(logprobs[p - 1, ids[p]]) for p in positions if p > 0)
    return total / len(positions)


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


def evaluate_model(local: Any, examples: list[Example], max_new_tokens: int = 128,
                   judge: Any = None, progress: Callable[[int], None] | None = None) -> tuple[dict[str, float | None], list[Answer]]:
    """Scores of one loaded model (``LocalModel``) and its answers, in example order."""
    from wilson_core.messages import parse_tagged_tool_calls

    sums: dict[str, list[float]] = {name: [] for name in METRICS}
    answers = []
    for example in examples:
        text, _, _ = local.generate(example.context, example.tools, max_new_tokens=max_new_tokens)
        content, calls = parse_tagged_tool_calls(text)
        prediction = Answer(
            content=content.strip(),
            calls=tuple((c.name, c.raw_arguments if c.malformed else json.dumps(c.arguments, sort_keys=True)) for c in calls),
        )
        reference = answer_of(example.reference)
        answers.append(prediction)
        sums["exact_match"].append(exact_match(prediction, reference))
        sums["token_f1"].append(token_f1(answer_text(prediction), answer_text(reference)))
        if reference.calls:
            names, full = tool_scores(prediction, reference)
            sums["tool_name_accuracy"].append(names)
            sums["tool_call_accuracy"].append(full)
        ll = reference_log_likelihood(local, example)
        if ll == ll:  # not NaN
            sums["avg_log_likelihood"].append(ll)
        if judge is not None:
            score = judge_score(judge, example, prediction, reference)
            if score is not None:
                sums["judge_score"].append(score)
        if progress:
            progress(1)
    scores = {name: (sum(v) / len(v) if v else None) for name, v in sums.items()}
    scores["examples"] = len(examples)
    scores["tool_examples"] = len(sums["tool_name_accuracy"])
    return scores, answers


def compare(data: str, base: str, tuned: str, *, limit: int | None = None, max_new_tokens: int = 128,
            judge_provider: str | None = None, samples: int = 0) -> dict[str, Any]:
    """Evaluate ``base`` and ``tuned`` on ``data``; the report ``wilson eval`` prints and writes."""
    from tqdm.auto import tqdm

    from .base import resolve_base
    from .provider import LocalModel, resolve_model_folder

    examples = load_examples(data, limit)
    if not examples:
        raise TrainError(f"{data}: no examples")
    resolve_base(base)
    tuned_path = Path(tuned)
    if not tuned_path.exists():
        raise TrainError(f"--tuned {tuned}: no such folder")
    judge = None
    if judge_provider:
        from wilson_core import LLM

        judge = LLM(judge_provider, call_type="eval-judge")
    report: dict[str, Any] = {"data": str(data), "base": base, "tuned": str(tuned), "models": {}}
    answers: dict[str, list[Answer]] = {}
    for label, name in (("base", base), ("tuned", tuned)):
        model_name, adapter = (name, None) if label == "base" else resolve_model_folder(name)
        local = LocalModel(model_name, adapter=adapter)
        with tqdm(total=len(examples), desc=f"eval {label}", leave=False) as bar:
            scores, answers[label] = evaluate_model(local, examples, max_new_tokens, judge, bar.update)
        report["models"][label] = scores
        del local
    rows = [
        {
            "question": next((m.get("content") for m in reversed(example.context) if m.get("role") == "user"), ""),
            "reference": answer_text(answer_of(example.reference)),
            "base": answer_text(a),
            "tuned": answer_text(b),
        }
        for example, a, b in zip(examples, answers["base"], answers["tuned"], strict=True)
    ]
    disagreements = [row for row in rows if row["base"] != row["tuned"]]
    report["disagreements"] = len(disagreements)
    report["samples"] = disagreements[:samples]
    report["answers"] = rows
    return report


def format_table(report: dict[str, Any]) -> str:
    base, tuned = report["models"]["base"], report["models"]["tuned"]
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
    return "\n".join(lines)
