"""``label-set``: the answer is exactly one of the allowed labels."""

from __future__ import annotations

from typing import Any, ClassVar

from wilson_core.interfaces import EvalCase, EvalContext, Evaluator, EvaluatorError


class LabelSet(Evaluator):
    """1 when the answer's text is one of ``labels`` (after trimming), else 0.

    Options: ``labels`` (required, a list of text), ``case_sensitive`` (default false).
    """

    description: ClassVar[str] = "the answer is exactly one of the allowed labels"
    option_types: ClassVar[dict[str, Any]] = {"labels": list, "case_sensitive": bool}
    required_options: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        labels = options["labels"]
        if not labels or not all(isinstance(label, str) for label in labels):
            raise EvaluatorError("option 'labels' must be a non-empty list of text")
        fold = (lambda text: text) if options.get("case_sensitive") else str.casefold
        self.fold = fold
        self.allowed = {fold(label.strip()) for label in labels}

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        content = answer.get("content") if isinstance(answer, dict) else None
        if answer.get("tool_calls") or not isinstance(content, str):
            return 0.0
        return float(self.fold(content.strip()) in self.allowed)
