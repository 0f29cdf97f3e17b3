"""``ab-win-rate``: people's blind A/B picks (dashboard) as a metric the gate can use.

It reads the picks stored in the registry's A/B tables, not the answers generated in
this evaluation: the candidate's result in every pick where its answer was shown is 1
(chosen), 0.5 (tie) or 0 (another system chosen).  The score is the mean with Wilson's
95% interval.  ``against = "baseline"`` counts only picks where the baseline system was
shown too; ``system`` names the candidate's A/B system label when it is not
``model:ID``.  No picks yet gives no score (``value`` ``None``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from wilson_core.interfaces import EvalCase, EvalContext, EvalScore, Evaluator, EvaluatorError

from .stats import mean_interval


def system_label(model: str | None) -> str | None:
    """The A/B system label of a registry model id (``model:ID``) or base (``base:NAME`` as is)."""
    if model is None:
        return None
    return model if ":" in model else f"model:{model}"


class ABWinRate(Evaluator):
    """Win rate of the candidate in people's blind A/B picks (ties count half)."""

    description: ClassVar[str] = "people's blind A/B picks: the candidate's win rate (ties half)"
    option_types: ClassVar[dict[str, Any]] = {"against": str, "system": str}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options.get("against", "any") not in ("any", "baseline"):
            raise EvaluatorError(f"option 'against' must be 'any' or 'baseline', got {options['against']!r}")

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        return None  # picks are per A/B item, not per generated answer: see evaluate()

    def evaluate(self, cases: list[EvalCase], answers: list[dict[str, Any]], context: EvalContext) -> EvalScore:
        if context.db is None:
            raise EvaluatorError("ab-win-rate reads A/B picks from the Wilson database: no database given")
        from wilson_core.store import open_store
        from wilson_core.store.registry import Registry

        system = self.options.get("system") or system_label(context.model)
        if system is None:
            raise EvaluatorError("ab-win-rate needs the candidate's A/B system (option 'system' or a model id)")
        against = system_label(context.baseline_model) if self.options.get("against") == "baseline" else None
        registry = Registry(open_store(context.db))
        outcomes = registry.ab_outcomes(system, against)
        score = mean_interval(outcomes)
        return EvalScore(value=score.value, count=score.count, low=score.low, high=score.high,
                         details={"system": system, "against": against})
