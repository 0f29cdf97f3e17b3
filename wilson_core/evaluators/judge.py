"""``judge-win-rate``: an LLM judge compares the candidate's answer with a reference answer.

The reference is the case's own answer (``against = "reference"``: the upstream model's
captured answer or the corrected label) or the baseline system's (``against = "baseline"``:
the live model, or the base the first time).  The judge sees the two answers as A and B
and says which is better, or a tie; with ``both_orders`` (the default) it is asked twice
with the order swapped, and a win counts only when both verdicts agree (position bias
cancels out).  The criteria are the annotation judge's default rubric.  The score is the
win rate, ties counting half, with Wilson's 95% interval.

The judge model is called through its provider driver (``judge = "NAME:MODEL"``, or the
pipeline's ``eval.judge``; ``judge_options`` go to the driver), so its calls are not
captured as the app's traffic.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from wilson_core.interfaces import EvalCase, EvalContext, EvalScore, Evaluator, EvaluatorError

from .answers import parts
from .stats import mean_interval


def _rubric_lines() -> str:
    try:
        from wilson_core.annotations.judge import DEFAULT_RUBRIC  # where the judge is moving
    except ImportError:
        from wilson_core.judge import DEFAULT_RUBRIC
    return "\n".join(f"- {c.name}: {c.description}" for c in DEFAULT_RUBRIC.criteria)


def pairwise_messages(case: EvalCase, first: str, second: str) -> list[dict[str, str]]:
    """The judge's prompt: the conversation's last question and answers A and B."""
    question = next((m.get("content") for m in reversed(case.messages) if m.get("role") == "user"), "") or ""
    return [
        {"role": "system", "content": (
            "You compare two answers of an AI assistant to the same request. Criteria:\n"
            f"{_rubric_lines()}\nReply with exactly one word: A, B or tie.")},
        {"role": "user", "content": f"Request:\n{question}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"},
    ]


_VERDICT = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


def parse_verdict(text: str | None) -> str | None:
    """``"A"``, ``"B"``, ``"tie"``, or ``None`` when the reply names none of them."""
    match = _VERDICT.search(text or "")
    if not match:
        return None
    word = match.group(1)
    return "tie" if word.lower() == "tie" else word.upper()


class JudgeWinRate(Evaluator):
    """Pairwise win rate of the candidate against a reference answer, by an LLM judge."""

    description: ClassVar[str] = "LLM judge's pairwise win rate against the reference or the baseline"
    option_types: ClassVar[dict[str, Any]] = {"judge": str, "judge_options": dict, "against": str,
                                              "both_orders": bool, "max_tokens": int}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options.get("against", "reference") not in ("reference", "baseline"):
            raise EvaluatorError(f"option 'against' must be 'reference' or 'baseline', got {options['against']!r}")
        self._provider: Any = None

    def _judge(self, context: EvalContext) -> Any:
        if self._provider is None:
            spec = self.options.get("judge") or context.judge
            if not spec:
                raise EvaluatorError("judge-win-rate needs a judge model: option 'judge' = \"NAME:MODEL\"")
            from .running import provider_for

            self._provider = provider_for(spec, self.options.get("judge_options"))
        return self._provider

    def verdict(self, case: EvalCase, candidate: str, reference: str, context: EvalContext) -> float | None:
        """1 win, 0.5 tie, 0 loss of ``candidate`` over ``reference``; ``None`` without a verdict."""
        judge = self._judge(context)
        params = {"temperature": 0, "max_tokens": self.options.get("max_tokens", 8)}
        first = parse_verdict(judge.chat(pairwise_messages(case, candidate, reference), None, params).content)
        points = {"A": 1.0, "B": 0.0, "tie": 0.5}
        if not self.options.get("both_orders", True):
            return points.get(first) if first else None
        second = parse_verdict(judge.chat(pairwise_messages(case, reference, candidate), None, params).content)
        if first is None or second is None:
            return None
        swapped = {"A": "B", "B": "A", "tie": "tie"}[second]
        return points[first] if first == swapped else 0.5

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        return self.verdict(case, parts(answer).text, parts(case.reference).text, context)

    def evaluate(self, cases: list[EvalCase], answers: list[dict[str, Any]], context: EvalContext) -> EvalScore:
        if self.options.get("against", "reference") == "reference":
            return super().evaluate(cases, answers, context)
        if context.baseline is None:
            raise EvaluatorError("judge-win-rate against = 'baseline' needs the baseline's answers")
        values = []
        for case, answer, other in zip(cases, answers, context.baseline, strict=True):
            value = self.verdict(case, parts(answer).text, parts(other).text, context)
            if value is not None:
                values.append(value)
        return mean_interval(values)
