"""The example evaluator, installed like any third-party package, is found and used by name."""

from __future__ import annotations

import pytest

from wilson_core.evaluators.running import load_evaluators
from wilson_core.interfaces import EvalCase, EvalContext, EvaluatorError
from wilson_core.plugins import driver_entry_points

CASE = EvalCase(id="1", messages=[{"role": "user", "content": "TESCO 12.40"}], tools=None,
                reference={"role": "assistant", "content": "Groceries"})


def test_it_is_declared_by_its_own_distribution():
    info = {i.name: i for i in driver_entry_points("wilson.evaluators")}
    assert info["label-set"].distribution == "wilson-example-evaluator"


def test_scores_answers_against_the_labels():
    ev = load_evaluators({"label-set": {"labels": ["Groceries", "Dining"]}})["label-set"]
    assert ev.score(CASE, {"content": " groceries "}, EvalContext()) == 1.0
    assert ev.score(CASE, {"content": "Groceries!"}, EvalContext()) == 0.0
    score = ev.evaluate([CASE, CASE], [{"content": "Dining"}, {"content": "no idea"}], EvalContext())
    assert score.value == 0.5 and score.count == 2


def test_bad_options_name_the_key():
    with pytest.raises(EvaluatorError, match="option 'labels' is required"):
        load_evaluators({"label-set": {}})
    with pytest.raises(EvaluatorError, match="option 'labels' must be list"):
        load_evaluators({"label-set": {"labels": "Groceries"}})
