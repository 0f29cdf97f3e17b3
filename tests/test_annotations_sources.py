"""Annotation sources: the LLM judge (proposals) and CSV/JSONL import."""

from __future__ import annotations

import json

import pytest

from wilson_core import LLM, annotations, open_store
from wilson_core.annotations import judge
from wilson_core.annotations.importing import import_file
from wilson_core.errors import AnnotationRefused, WilsonError


@pytest.fixture
def db(store_location: str) -> dict:
    """Three answers, once in an SQLite file and once in a PostgreSQL database."""
    path = store_location
    llm = LLM("scripted:small", db=str(path), script=["$120", "Hello!", "Bye"])
    ids = [llm.chat([{"role": "user", "content": q}]).interaction_id for q in ("Food?", "Hi", "Bye")]
    return {"store": open_store(path), "ids": ids, "path": path}


def verdict(correctness, helpfulness, tool_use=3, clarity=3, rationale="ok"):
    return json.dumps(
        {
            "scores": {"correctness": correctness, "helpfulness": helpfulness, "tool_use": tool_use, "clarity": clarity},
            "rationale": rationale,
        }
    )


def test_the_judge_stores_weighted_ratings_as_proposals(db):
    store = db["store"]
    seen = []

    def reply(messages, tools):
        seen.append(messages)
        return "Here you go: " + verdict(5, 5, 5, 1, "solid")  # (0.4*5+0.3*5+0.2*5+0.1*1) = 4.6 -> 5

    report = judge.judge(store, "scripted:judge", limit=2, provider_options={"script": reply})
    assert len(report.proposals) == 2 and report.failures == ()
    label = report.proposals[0]
    assert (label.rating, label.source, label.status, label.annotator) == (5, "judge", "proposed", "judge:scripted:judge")
    assert "correctness 5" in label.notes and "solid" in label.notes
    assert "correctness (weight 0.4)" in seen[0][0]["content"]
    judged = store.connection().execute("SELECT count(*) FROM interactions WHERE call_type = 'judge'").fetchone()[0]
    assert judged == 2  # the judge's own calls were captured
    # a judge label is not a human label
    assert annotations.effective_label(store, label.interaction_id) is None
    # judging again skips what this judge already rated (and never judges judge calls)
    again = judge.judge(store, "scripted:judge", limit=10, provider_options={"script": reply})
    assert [a.interaction_id for a in again.proposals] == [db["ids"][0]]


def test_criteria_and_weights_are_configurable(db, tmp_path):
    rubric_file = tmp_path / "rubric.json"
    rubric_file.write_text(json.dumps({"instructions": "Judge money answers.", "criteria": [
        {"name": "accuracy", "description": "numbers right", "weight": 3},
        {"name": "tone", "weight": 1},
    ]}))
    rubric = judge.load_rubric(rubric_file)
    reply = json.dumps({"scores": {"accuracy": 1, "tone": 5}})  # (3*1 + 1*5) / 4 = 2
    report = judge.judge(db["store"], "scripted:j", rubric=rubric, ids=[db["ids"][0]], provider_options={"script": [reply]})
    assert report.proposals[0].rating == 2
    heavier_tone = judge.rubric_with_weights(rubric, ["accuracy=1", "tone=3"])
    assert heavier_tone.rating({"accuracy": 1, "tone": 5}) == 4


def test_a_bad_rubric_is_refused_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"criteria": [{"name": "x", "weight": 0}]}))
    with pytest.raises(WilsonError, match="weight must be > 0"):
        judge.load_rubric(bad)
    bad.write_text("{not json")
    with pytest.raises(WilsonError, match="cannot be parsed"):
        judge.load_rubric(bad)


def test_an_unreadable_verdict_is_a_failure_and_stores_nothing(db):
    store = db["store"]
    report = judge.judge(
        store, "scripted:j", ids=db["ids"][:2], provider_options={"script": ["no json here", verdict(9, 1)]}
    )
    assert report.proposals == ()
    assert "JSON object" in report.failures[0][1] and "1-5" in report.failures[1][1]
    assert store.count("annotations") == 0


def test_proposals_are_accepted_or_rejected_singly_or_in_bulk(db):
    store = db["store"]
    judge.judge(store, "scripted:j", limit=3, provider_options={"script": [verdict(4, 4)] * 3})
    first, second, third = db["ids"]
    assert len(annotations.pending_proposals(store)) == 3
    accepted = annotations.accept(store, [first])
    assert accepted[0].status == "accepted" and accepted[0].rating == 4
    annotations.reject(store, [second, third])
    assert annotations.pending_proposals(store) == []
    with pytest.raises(AnnotationRefused, match="no judge proposal"):
        annotations.accept(store, [second])
    statuses = dict(store.connection().execute("SELECT interaction_id, status FROM current_annotations").fetchall())
    assert statuses == {first: "accepted", second: "rejected", third: "rejected"}


def test_import_of_a_csv_file_writes_labels_with_source_import(db, tmp_path):
    store = db["store"]
    first, second, _ = db["ids"]
    annotations.annotate(store, first, notes="keep me")
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "id,rating,preference,tags,notes,corrected_response\n"
        f"{first},5,,good;money,,\n"
        f'{second},2,rejected,"[""rude""]","too short","Hello! How can I help with your money today?"\n'
    )
    written = import_file(store, csv_file)
    assert [(a.rating, a.source, a.annotator) for a in written] == [(5, "import", "import"), (2, "import", "import")]
    assert written[0].tags == ("good", "money")
    assert (written[1].preference, written[1].corrected_response[:6]) == ("rejected", "Hello!")
    assert annotations.current(store, first).notes == "keep me"  # the human label is untouched
    assert annotations.effective_label(store, first).rating == 5


def test_import_of_jsonl_merges_with_previous_imported_versions(db, tmp_path):
    store = db["store"]
    first = db["ids"][0]
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"id": first, "rating": 3, "notes": "n"}) + "\n\n" + json.dumps({"id": first, "tags": ["x"]}) + "\n")
    written = import_file(store, path)
    assert (written[-1].rating, written[-1].notes, written[-1].tags, written[-1].version) == (3, "n", ("x",), 2)


def test_a_bad_import_file_names_every_bad_line_and_writes_nothing(db, tmp_path):
    store = db["store"]
    first = db["ids"][0]
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": first, "rating": 4}),
                json.dumps({"id": first, "rating": 6}),
                "{broken",
                json.dumps({"id": "unknown-id", "rating": 3}),
                json.dumps({"id": first, "stars": 3}),
            ]
        )
        + "\n"
    )
    with pytest.raises(AnnotationRefused) as refused:
        import_file(store, path)
    message = str(refused.value)
    assert "4 bad line(s), nothing was imported" in message
    for expected in ("line 2: a rating", "line 3: not valid JSON", "line 4: no interaction", "line 5: unknown field(s) stars"):
        assert expected in message
    assert store.count("annotations") == 0


def test_a_csv_with_an_unknown_column_is_refused(db, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,stars\nabc,3\n")
    with pytest.raises(AnnotationRefused, match="header must name the column id"):
        import_file(db["store"], path)


def test_the_built_in_annotation_sources_are_declared_on_the_hook():
    from wilson_core import plugins

    pm = plugins.plugin_manager()
    assert pm.is_registered(annotations), "wilson-core's entry point 'annotations' is missing"
    sources = [s for group in pm.hook.wilson_annotation_sources() for s in group]
    kinds = {s["name"]: s["kind"] for s in sources}
    assert {"cli": "human", "import": "import", "judge": "judge", "harvest-pairs": "rule"}.items() <= kinds.items()
