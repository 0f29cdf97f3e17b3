"""Shadow answers (wilson proxy shadow routes) in `wilson stats` and `wilson annotate harvest-pairs --from-shadow`.

Data is captured through wilson_core.capture, in runs carrying the proxy's shadow metadata,
on an SQLite file and on a real PostgreSQL database.
"""

from __future__ import annotations

import json

import pytest

import wilson_core
from wilson_core import annotations, shadowing
from wilson_core.cli import main
from wilson_core.store import open_store, sink
from wilson_core.store import shadow as shadow_sql


def wilson(capsys, db, *args):
    capsys.readouterr()
    code = main(["--db", db, *args])
    return code, capsys.readouterr().out


SYSTEM = {"role": "system", "content": "Categorise the transaction."}


@pytest.fixture
def location(store_location, tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("WILSON_DB", raising=False)
    yield store_location
    sink.forget_stores()


def answer(db, line, content, provider="openai", call_type="categorize", **parts):
    return wilson_core.record_call(provider=provider, model="m", messages=[SYSTEM, {"role": "user", "content": line}],
                                   content=content, call_type=call_type, db=db, **parts)


def shadowed(db, line, upstream_text, local_text, call_type="categorize", **local_parts):
    """An upstream answer and, in a run of its own carrying the proxy's metadata, the local model's shadow."""
    upstream = answer(db, line, upstream_text, call_type=call_type)
    with wilson_core.run(call_type=call_type, metadata={"shadow_of": upstream.id, "route": "tuned"}):
        local = answer(db, line, local_text, provider="llamacpp", call_type=call_type, **local_parts)
    assert upstream is not None and local is not None
    return upstream, local


def test_stats_reports_shadow_agreement_per_call_type(location, capsys):
    db = location
    shadowed(db, "UBER 12.00", "Transport", "  transport ")           # agrees (case, whitespace)
    shadowed(db, "TESCO 40.10", "Groceries", "Dining")                 # disagrees
    a, b = shadowed(db, "NETFLIX", "Subscriptions", "subscriptions")  # agrees
    shadowed(db, "RENT", "Housing", "", status="error", error="local model crashed")  # shadow failed
    long_text = "word " * 100
    shadowed(db, "Explain my spending", long_text, long_text, call_type="agent")  # long: no exact match
    answer(db, "plain call, no shadow", "Other")
    store = open_store(db)
    try:
        assert len(shadow_sql.shadow_pairs(store.connection())) == 5
        annotations.rate(store, a.id, 4, source="judge", status="proposed", annotator="judge:x")
        annotations.rate(store, b.id, 5, source="judge", status="proposed", annotator="judge:x")
    finally:
        store.close()
    code, out = wilson(capsys, db, "stats", "--json")
    assert code == 0, out
    report = json.loads(out)["shadow"]
    assert report["categorize"] | {"judge_mean": None} == {
        "pairs": 4, "shadow_errors": 1, "short": 4, "exact_match": 2, "exact_agreement": 0.5,
        "judged": 1, "judge_agree": 1, "judge_agreement": 1.0, "judge_mean": None}
    assert report["categorize"]["judge_mean"] == {"upstream": 4.0, "shadow": 5.0}
    assert report["agent"]["pairs"] == 1 and report["agent"]["short"] == 0
    assert report["agent"]["exact_agreement"] is None and report["agent"]["judge_agreement"] is None
    code, text = wilson(capsys, db, "stats")
    assert code == 0, text
    assert "categorize: 4 pair(s), 1 shadow error(s), exact match 2/4 short (50%)" in text
    assert "judge: local as good 1/1 (100%)" in text and "agent: 1 pair(s)" in text


def test_stats_without_shadow_answers_has_no_shadow_section(location, capsys):
    answer(location, "UBER", "Transport")
    code, out = wilson(capsys, location, "stats", "--json")
    assert code == 0 and json.loads(out)["shadow"] == {}
    assert "shadow agreement" not in wilson(capsys, location, "stats")[1]


def test_a_shadow_whose_upstream_answer_was_deleted_is_left_out(location):
    upstream, _ = shadowed(location, "UBER", "Transport", "Transport")
    store = open_store(location)
    try:
        store.connection().execute("UPDATE runs SET deleted_at = '2026-01-01T00:00:00+00:00' WHERE id = ?",
                                   (upstream.run_id,))
        assert shadow_sql.shadow_pairs(store.connection()) == []
        assert shadowing.agreement(store) == {}
    finally:
        store.close()


def test_harvest_pairs_from_shadow_uses_the_labels_that_count(location, capsys):
    db = location
    good_up, bad_local = shadowed(db, "UBER", "Transport", "Groceries")
    bad_up, good_local = shadowed(db, "TESCO", "Dining", "Groceries")
    judged_up, judged_local = shadowed(db, "RENT", "Housing", "Utilities")
    close_up, close_local = shadowed(db, "GYM", "Health", "Fitness")
    store = open_store(db)
    try:
        annotations.rate(store, good_up.id, 5)
        annotations.rate(store, bad_local.id, 1)
        annotations.rate(store, bad_up.id, 2)
        annotations.rate(store, good_local.id, 5)
        # an accepted judge label counts; a proposal does not
        annotations.rate(store, judged_up.id, 5, source="judge", status="accepted", annotator="judge:x")
        annotations.rate(store, judged_local.id, 1, source="judge", status="proposed", annotator="judge:x")
        annotations.rate(store, close_up.id, 4)
        annotations.rate(store, close_local.id, 3)  # gap 1 < min gap 2
        # the plain harvest pairs answers rated by people across contexts too; the shadow one only these pairs
        dry = annotations.harvest_pairs(store, from_shadow=True, dry_run=True)
        assert {(p.chosen_id, p.rejected_id) for p in dry} == {(good_up.id, bad_local.id), (good_local.id, bad_up.id)}
        annotations.rate(store, judged_local.id, 1, source="judge", status="accepted", annotator="judge:x")
    finally:
        store.close()
    code, out = wilson(capsys, db, "annotate", "harvest-pairs", "--from-shadow", "--json")
    assert code == 0, out
    made = {(p["chosen_id"], p["rejected_id"]) for p in json.loads(out)}
    assert made == {(good_up.id, bad_local.id), (good_local.id, bad_up.id), (judged_up.id, judged_local.id)}
    code, again = wilson(capsys, db, "annotate", "harvest-pairs", "--from-shadow")
    assert code == 0 and "made 0 pair(s)" in again
    store = open_store(db)
    try:
        assert annotations.effective_label(store, bad_local.id).preference == "rejected"
        assert annotations.effective_label(store, good_local.id).preference == "chosen"
    finally:
        store.close()


@pytest.mark.parametrize("metadata", [
    {"shadow_of": "no-such-interaction", "route": "tuned"},   # the upstream answer is not stored
    {"shadow_of": 42},                                         # not an id
    {"shadow_of": None, "route": ["x"]},
    {"note": 'says "shadow_of" in passing'},                   # matches LIKE, not a shadow
])
def test_runs_that_only_look_like_shadows_are_left_out(location, metadata, capsys):
    upstream = answer(location, "UBER", "Transport")
    with wilson_core.run(call_type="categorize", metadata=metadata):
        answer(location, "UBER", "transport", provider="llamacpp")
    store = open_store(location)
    try:
        assert shadow_sql.shadow_pairs(store.connection()) == []
        assert shadow_sql.shadows_of_context(store.connection(), upstream.id) == []
        assert annotations.harvest_pairs(store, from_shadow=True, dry_run=True) == []
    finally:
        store.close()
    code, out = wilson(capsys, location, "stats", "--json")
    assert code == 0 and json.loads(out)["shadow"] == {}
