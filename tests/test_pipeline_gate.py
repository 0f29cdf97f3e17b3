"""The promotion gate, both ways: margin on the gate metric, tolerance on every subset."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wilson_core.interfaces import EvalScore
from wilson_core.pipeline.config import GateRule
from wilson_core.pipeline.gate import decide

RULE = GateRule(metric="exact-match", set="all", margin=0.05, tolerance=0.05)


def test_promotes_a_candidate_that_beats_the_reference_by_the_margin():
    good = {("all", "exact-match"): EvalScore(0.8, 20), ("seen", "exact-match"): EvalScore(0.8, 10)}
    ref = {("all", "exact-match"): EvalScore(0.5, 20), ("seen", "exact-match"): EvalScore(0.5, 10)}
    decision = decide(RULE, good, ref, "base")
    assert decision.promote and decision.blocking is None
    assert decision.reason.startswith("promoted: exact-match on all 0.800 vs base 0.500 (+0.300)")


def test_refuses_below_the_margin_and_names_the_metric():
    decision = decide(RULE, {("all", "exact-match"): EvalScore(0.53, 20)},
                      {("all", "exact-match"): EvalScore(0.5, 20)}, "live m-1")
    assert not decision.promote and decision.blocking == "exact-match"
    assert "0.530 vs live m-1 0.500 (+0.030); needs at least +0.050" in decision.reason


def test_refuses_a_regression_on_a_subset_even_when_the_metric_improves():
    candidate = {("all", "exact-match"): EvalScore(0.9, 40), ("new", "token-f1"): EvalScore(0.4, 20)}
    reference = {("all", "exact-match"): EvalScore(0.5, 40), ("new", "token-f1"): EvalScore(0.6, 20)}
    decision = decide(RULE, candidate, reference, "live m-1")
    assert not decision.promote and decision.blocking == "token-f1"
    assert "token-f1 on new fell 0.200" in decision.reason
    assert decision.regressions[0]["set"] == "new"


def test_lower_is_better_metrics_are_compared_the_other_way():
    rule = GateRule(metric="latency", set="all", margin=0.0, tolerance=0.0)
    decision = decide(rule, {("all", "latency"): EvalScore(0.2, 5)}, {("all", "latency"): EvalScore(0.4, 5)},
                      "base", {"latency": False})
    assert decision.promote


def test_no_score_refuses():
    decision = decide(RULE, {("all", "exact-match"): EvalScore(None, 0)}, {("all", "exact-match"): EvalScore(0.1, 9)},
                      "base")
    assert not decision.promote and "no score for the candidate" in decision.reason


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.5))
def test_promotion_iff_gain_reaches_the_margin(mine, theirs, margin):
    rule = GateRule(metric="m", set="all", margin=margin, tolerance=1.0)
    decision = decide(rule, {("all", "m"): EvalScore(mine, 10)}, {("all", "m"): EvalScore(theirs, 10)}, "base")
    gain = mine - theirs
    assert decision.promote == (gain > 0 and gain + 1e-12 >= margin)
