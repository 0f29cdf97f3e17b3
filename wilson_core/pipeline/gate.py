"""The promotion gate: a candidate goes live only when it beats the reference.

The reference is the live model, or the base model when none is live yet; both are
scored in the same run on the same eval sets.  The candidate must beat it on the
gate's metric (on one set, or ``all`` pooled) by at least ``margin`` (and by more
than nothing), and no (set, evaluator) score may fall more than ``tolerance`` below
the reference's.  The decision says which metric blocked promotion, with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import asdict, field, frozen

from wilson_core.interfaces import EvalScore

from .config import GateRule


@frozen
class GateDecision:
    """Whether to promote, why, and the numbers that decided."""

    promote: bool
    reason: str
    metric: str
    set: str
    reference: str
    candidate_value: float | None
    reference_value: float | None
    margin: float
    tolerance: float
    #: the (set, evaluator) scores that fell more than ``tolerance`` below the reference's.
    regressions: tuple[dict[str, Any], ...] = field(default=(), converter=tuple)
    #: the metric that blocked promotion (``None`` when promoted).
    blocking: str | None = None

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressions"] = list(self.regressions)
        return data


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def decide(rule: GateRule, candidate: Mapping[tuple[str, str], EvalScore],
           reference: Mapping[tuple[str, str], EvalScore], reference_name: str,
           higher_is_better: Mapping[str, bool] | None = None) -> GateDecision:
    """Apply ``rule`` to the candidate's and the reference's scores (``{(set, evaluator): score}``)."""
    higher = dict(higher_is_better or {})
    key = (rule.set, rule.metric)
    mine, theirs = candidate.get(key), reference.get(key)
    base: dict[str, Any] = {"metric": rule.metric, "set": rule.set, "reference": reference_name,
                            "candidate_value": mine.value if mine else None,
                            "reference_value": theirs.value if theirs else None,
                            "margin": rule.margin, "tolerance": rule.tolerance}
    where = f"{rule.metric} on {rule.set}"
    if mine is None or mine.value is None or mine.count < rule.min_count:
        count = mine.count if mine else 0
        return GateDecision(promote=False, blocking=rule.metric, **base, reason=(
            f"refused: {where} has no score for the candidate ({count} case(s), need {rule.min_count})"))
    if theirs is None or theirs.value is None:
        return GateDecision(promote=False, blocking=rule.metric, **base, reason=(
            f"refused: {where} has no score for {reference_name} to compare with"))
    sign = 1.0 if higher.get(rule.metric, True) else -1.0
    gain = sign * (mine.value - theirs.value)
    regressions = []
    for (set_name, evaluator), score in sorted(candidate.items()):
        other = reference.get((set_name, evaluator))
        if score.value is None or other is None or other.value is None:
            continue
        drop = (1.0 if higher.get(evaluator, True) else -1.0) * (other.value - score.value)
        if drop > rule.tolerance + 1e-12:
            regressions.append({"set": set_name, "evaluator": evaluator, "candidate": score.value,
                                "reference": other.value, "drop": drop})
    numbers = f"{_fmt(mine.value)} vs {reference_name} {_fmt(theirs.value)} ({gain:+.3f})"
    if gain <= 0 or gain + 1e-12 < rule.margin:
        need = "needs more than +0" if rule.margin == 0 else f"needs at least +{rule.margin:.3f}"
        return GateDecision(promote=False, blocking=rule.metric, regressions=regressions, **base,
                            reason=f"refused: {where} {numbers}; {need}")
    if regressions:
        worst = max(regressions, key=lambda r: r["drop"])
        return GateDecision(
            promote=False, blocking=worst["evaluator"], regressions=regressions, **base,
            reason=(f"refused: {worst['evaluator']} on {worst['set']} fell {worst['drop']:.3f} below "
                    f"{reference_name} ({_fmt(worst['candidate'])} vs {_fmt(worst['reference'])}; tolerance "
                    f"{rule.tolerance:.3f}), although {where} {numbers}"))
    return GateDecision(promote=True, **base, reason=(
        f"promoted: {where} {numbers} >= margin {rule.margin:.3f}; no eval subset fell more than "
        f"{rule.tolerance:.3f}"))
