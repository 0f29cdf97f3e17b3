"""The built-in evaluators (``wilson.evaluators``): scores, intervals, options, the judge, A/B picks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wilson_core.errors import PluginError
from wilson_core.evaluators.running import generate, load_cases, load_evaluators, score_sets
from wilson_core.evaluators.stats import mean_interval, wilson_interval
from wilson_core.interfaces import EVALUATORS, EvalCase, EvalContext, EvaluatorError
from wilson_core.plugins import driver_names

CTX = EvalContext()


def case(reference, subset="s"):
    ref = reference if isinstance(reference, dict) else {"role": "assistant", "content": reference}
    return EvalCase(id="c", messages=[{"role": "user", "content": "q?"}], tools=None, reference=ref, subset=subset)


def call(name, **arguments):
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": name, "arguments": arguments}}]}


def test_builtins_are_declared_as_entry_points():
    assert {"exact-match", "token-f1", "json-schema", "tool-call", "judge-win-rate",
            "ab-win-rate"} <= set(driver_names(EVALUATORS))


def test_exact_match_normalises_case_and_space_and_compares_tool_calls():
    ev = load_evaluators({"exact-match": {}})["exact-match"]
    assert ev.score(case("Groceries"), {"content": "  groceries "}, CTX) == 1.0
    assert ev.score(case("Groceries"), {"content": "Dining"}, CTX) == 0.0
    assert ev.score(case(call("f", a=1)), call("f", a=1), CTX) == 1.0
    assert ev.score(case(call("f", a=1)), call("f", a=2), CTX) == 0.0
    strict = load_evaluators({"exact-match": {"case_sensitive": True}})["exact-match"]
    assert strict.score(case("Groceries"), {"content": "groceries"}, CTX) == 0.0


def test_token_f1_partial_overlap():
    ev = load_evaluators({"token-f1": {}})["token-f1"]
    assert ev.score(case("the cat sat"), {"content": "the cat"}, CTX) == pytest.approx(0.8)
    assert ev.score(case("a"), {"content": "b"}, CTX) == 0.0


def test_json_schema_validity():
    schema = {"type": "object", "properties": {"category": {"enum": ["food", "rent"]}}, "required": ["category"]}
    ev = load_evaluators({"json-schema": {"schema": schema}})["json-schema"]
    assert ev.score(case("x"), {"content": '{"category": "food"}'}, CTX) == 1.0
    assert ev.score(case("x"), {"content": '```json\n{"category": "rent"}\n```'}, CTX) == 1.0
    assert ev.score(case("x"), {"content": '{"category": "fun"}'}, CTX) == 0.0
    assert ev.score(case("x"), {"content": "not json"}, CTX) == 0.0
    with pytest.raises(EvaluatorError, match="not a valid JSON schema"):
        load_evaluators({"json-schema": {"schema": {"type": 12}}})


def test_tool_call_accuracy_right_tool_and_arguments():
    ev = load_evaluators({"tool-call": {}})["tool-call"]
    ref = case(call("spend", month="2026-11"))
    assert ev.score(ref, call("spend", month="2026-11"), CTX) == 1.0
    assert ev.score(ref, call("spend", month="2026-10"), CTX) == 0.0
    assert ev.score(ref, {"content": "I cannot"}, CTX) == 0.0
    assert ev.score(case("plain"), {"content": "plain"}, CTX) is None  # not a tool case
    names = load_evaluators({"tool-call": {"match": "names"}})["tool-call"]
    assert names.score(ref, call("spend", month="2026-10"), CTX) == 1.0


def test_bad_options_name_the_key_and_unknown_names_list_the_installed():
    with pytest.raises(EvaluatorError, match="evaluator 'exact-match': unknown option 'casesensitive'"):
        load_evaluators({"exact-match": {"casesensitive": True}})
    with pytest.raises(EvaluatorError, match="option 'case_sensitive' must be bool"):
        load_evaluators({"exact-match": {"case_sensitive": "yes"}})
    with pytest.raises(PluginError, match="available: .*exact-match"):
        load_evaluators({"exact-matsh": {}})


@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_interval_contains_the_rate(wins, extra):
    count = wins + extra
    low, high = wilson_interval(wins, count)
    assert 0.0 <= low <= wins / count <= high <= 1.0


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_mean_interval_brackets_the_mean(values):
    score = mean_interval(values)
    assert score.count == len(values)
    assert score.low - 1e-9 <= score.value <= score.high + 1e-9


def test_judge_win_rate_asks_both_orders(tmp_path):
    # per case: the verdict with the candidate first, then with it second
    script = tmp_path / "judge.jsonl"
    script.write_text("\n".join(json.dumps(r) for r in ["A", "B", "B", "A", "A", "A", "tie", "tie"]) + "\n")
    ev = load_evaluators({"judge-win-rate": {"judge": "scripted:judge",
                                             "judge_options": {"script": str(script)}}})["judge-win-rate"]
    cases = [case("ref")] * 4
    score = ev.evaluate(cases, [{"content": "c"}] * 4, CTX)
    # win (A then B), loss (B then A), position-biased (A, A) = tie, tie
    assert score.count == 4 and score.value == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert score.low < score.value < score.high


def test_judge_needs_a_judge_model():
    ev = load_evaluators({"judge-win-rate": {}})["judge-win-rate"]
    with pytest.raises(EvaluatorError, match="needs a judge model"):
        ev.evaluate([case("r")], [{"content": "c"}], CTX)


def test_sets_are_scored_per_set_and_pooled(tmp_path):
    lines = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
             for i in range(4)]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    one.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n")
    two.write_text("\n".join(json.dumps(x) for x in lines[2:]) + "\n")
    sets = {"one": load_cases(one, "one"), "two": load_cases(two, "two")}
    script = tmp_path / "model.jsonl"
    script.write_text("\n".join(json.dumps(x) for x in ["a0", "wrong", "a2", "a3"]) + "\n")
    # one script per set: each set's generation opens its own provider
    scripts = {"one": ["a0", "wrong"], "two": ["a2", "a3"]}
    answers = {}
    for name, cases in sets.items():
        script.write_text("\n".join(json.dumps(x) for x in scripts[name]) + "\n")
        answers[name] = generate("scripted:model", cases, options={"script": str(script)})
    scores = score_sets(load_evaluators({"exact-match": {}}), sets, answers, CTX)
    assert scores[("one", "exact-match")].value == 0.5
    assert scores[("two", "exact-match")].value == 1.0
    assert scores[("all", "exact-match")].value == 0.75 and scores[("all", "exact-match")].count == 4


def test_eval_set_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(EvaluatorError, match="bad.jsonl:1: an eval set line must be"):
        load_cases(bad, "bad")
    with pytest.raises(EvaluatorError, match="no such file"):
        load_cases(tmp_path / "missing.jsonl", "m")


def test_judge_against_the_baseline_compares_the_two_systems_answers(tmp_path):
    script = tmp_path / "judge.jsonl"
    script.write_text("\n".join(json.dumps(r) for r in ["A", "B", "B", "A"]) + "\n")
    ev = load_evaluators({"judge-win-rate": {"against": "baseline",
                                             "judge_options": {"script": str(script)}}})["judge-win-rate"]
    context = EvalContext(baseline=[{"content": "base 1"}, {"content": "base 2"}], judge="scripted:judge")
    score = ev.evaluate([case("r1"), case("r2")], [{"content": "mine 1"}, {"content": "mine 2"}], context)
    assert (score.value, score.count) == (0.5, 2)  # one win, one loss
    with pytest.raises(EvaluatorError, match="needs the baseline's answers"):
        ev.evaluate([case("r")], [{"content": "c"}], EvalContext(judge="scripted:judge"))
    with pytest.raises(EvaluatorError, match="option 'against' must be"):
        load_evaluators({"judge-win-rate": {"against": "live"}})
