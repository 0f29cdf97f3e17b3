"""The annotation API: versions, merging, pairs, corrections, undo, harvest, regenerate, refusals."""

from __future__ import annotations

import sqlite3

import pytest

from wilson_core import LLM, annotations, hookimpl, open_store, plugins
from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.store import search

SYSTEM = {"role": "system", "content": "You are a finance assistant."}
QUESTION = {"role": "user", "content": "How much did I spend on food?"}


@pytest.fixture
def db(store_location: str) -> dict:
    """A real database with two answers to one context, one to another, and a deleted run.

    Once on an SQLite file, once on a PostgreSQL database (``store_location``).
    """
    path = store_location
    llm = LLM("scripted:small", db=str(path), script=["$120", "About $118.50", "Hello!", "gone"])
    first = llm.chat([SYSTEM, QUESTION])
    second = llm.chat([SYSTEM, QUESTION])
    other = llm.chat([SYSTEM, {"role": "user", "content": "Hi"}])
    deleted = llm.chat([SYSTEM, QUESTION])
    store = open_store(path)
    store.connection().execute(
        "UPDATE runs SET deleted_at = '2026-01-01T00:00:00+00:00' WHERE id = ?", (deleted.run_id,)
    )
    return {
        "store": store,
        "a": first.interaction_id,
        "b": second.interaction_id,
        "other": other.interaction_id,
        "deleted": deleted.interaction_id,
    }


def rows(store, table: str = "annotations") -> list[sqlite3.Row]:
    return store.connection().execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def test_rating_a_star_keeps_the_notes_and_tags(db):
    store = db["store"]
    annotations.annotate(store, db["a"], notes="check the currency", add_tags=["finance"])
    label = annotations.rate(store, db["a"], 4)
    assert (label.rating, label.notes, label.tags, label.version) == (4, "check the currency", ("finance",), 2)
    assert len(rows(store)) == 2  # append-only: the first version is still there
    assert annotations.current(store, db["a"]) == label


def test_each_row_holds_the_full_merged_state(db):
    store = db["store"]
    annotations.rate(store, db["a"], 2)
    annotations.annotate(store, db["a"], add_tags=["wrong-total"])
    annotations.correct(store, db["a"], "You spent $118.50 on food.")
    last = rows(store)[-1]
    assert (last["rating"], last["tags_json"], last["corrected_response"]) == (
        2,
        '["wrong-total"]',
        "You spent $118.50 on food.",
    )
    view = store.connection().execute("SELECT * FROM current_annotations").fetchall()
    assert [v["id"] for v in view] == [last["id"]]


def test_tags_can_be_added_removed_and_notes_cleared(db):
    store = db["store"]
    annotations.annotate(store, db["a"], add_tags=["a", "b"], notes="n")
    label = annotations.annotate(store, db["a"], remove_tags=["a"], clear=["notes"])
    assert label.tags == ("b",) and label.notes is None


def test_undo_makes_the_previous_version_current_again(db):
    store = db["store"]
    annotations.rate(store, db["a"], 5, notes="great")
    annotations.rate(store, db["a"], 1)
    now = annotations.undo(store, db["a"])
    assert (now.rating, now.notes, now.version) == (5, "great", 1)
    history = annotations.history(store, db["a"])
    assert [v.annotation.rating for v in history] == [5, 1]
    assert history[0].undone_at is None and history[1].undone_at is not None
    assert annotations.undo(store, db["a"]) is None
    with pytest.raises(AnnotationRefused, match="nothing to undo"):
        annotations.undo(store, db["a"])


def test_a_new_version_after_an_undo_gets_a_fresh_version_number(db):
    store = db["store"]
    annotations.rate(store, db["a"], 3)
    annotations.rate(store, db["a"], 4)
    annotations.undo(store, db["a"])
    label = annotations.rate(store, db["a"], 5)
    assert label.version == 3
    assert annotations.current(store, db["a"]).rating == 5


def test_streams_are_kept_apart_by_annotator_and_source(db):
    store = db["store"]
    annotations.rate(store, db["a"], 5, annotator="ann")
    annotations.rate(store, db["a"], 2, annotator="bob")
    assert annotations.current(store, db["a"], annotator="ann").rating == 5
    assert annotations.current(store, db["a"], annotator="bob").rating == 2
    assert annotations.effective_label(store, db["a"]).rating == 2  # the newest


@pytest.mark.parametrize("stars", [0, 6, -1, 2.5, True, "five"])
def test_a_bad_star_value_is_refused_and_nothing_is_written(db, stars):
    with pytest.raises(AnnotationRefused, match="1 to 5"):
        annotations.rate(db["store"], db["a"], stars)
    assert rows(db["store"]) == []


def test_an_unknown_id_is_refused_and_nothing_is_written(db):
    with pytest.raises(NotFound, match="no interaction with id 'nope'"):
        annotations.rate(db["store"], "nope", 3)
    with pytest.raises(NotFound):
        annotations.pair(db["store"], db["a"], "nope")
    assert rows(db["store"]) == [] and rows(db["store"], "pairs") == []


def test_annotating_an_interaction_of_a_deleted_run_is_refused(db):
    with pytest.raises(AnnotationRefused, match="was deleted"):
        annotations.rate(db["store"], db["deleted"], 3)
    with pytest.raises(AnnotationRefused, match="was deleted"):
        annotations.pair(db["store"], db["a"], db["deleted"])
    assert rows(db["store"]) == [] and rows(db["store"], "pairs") == []


def test_bad_preference_source_and_status_are_refused(db):
    store = db["store"]
    with pytest.raises(AnnotationRefused, match="preference"):
        annotations.annotate(store, db["a"], preference="best")
    with pytest.raises(AnnotationRefused, match="source"):
        annotations.annotate(store, db["a"], rating=3, source="robot")
    with pytest.raises(AnnotationRefused, match="only judge labels"):
        annotations.annotate(store, db["a"], rating=3, status="proposed")
    with pytest.raises(AnnotationRefused, match="tag"):
        annotations.annotate(store, db["a"], add_tags=[" "])
    assert rows(store) == []


def test_a_pair_joins_two_answers_to_the_same_context(db):
    store = db["store"]
    annotations.rate(store, db["b"], 2, notes="too vague")
    made = annotations.pair(store, db["b"], db["a"])
    stored = rows(store, "pairs")
    assert [(p["chosen_id"], p["rejected_id"], p["source"]) for p in stored] == [(db["b"], db["a"], "human")]
    chosen = annotations.current(store, db["b"])
    rejected = annotations.current(store, db["a"])
    assert (chosen.preference, chosen.pair_id, chosen.rating, chosen.notes) == ("chosen", made.id, 2, "too vague")
    assert (rejected.preference, rejected.pair_id) == ("rejected", made.id)


def test_one_answer_can_be_in_many_pairs(db, tmp_path):
    store = db["store"]
    llm = LLM("scripted:big", db=str(store.path), script=["$118.50 exactly"])
    third = llm.chat([SYSTEM, QUESTION]).interaction_id
    annotations.pair(store, third, db["a"])
    annotations.pair(store, third, db["b"])
    assert len(annotations.pairs_of(store, third)) == 2


def test_a_pair_of_different_contexts_is_refused_unless_forced(db):
    store = db["store"]
    with pytest.raises(AnnotationRefused, match="different contexts"):
        annotations.pair(store, db["a"], db["other"])
    assert rows(store) == [] and rows(store, "pairs") == []
    made = annotations.pair(store, db["a"], db["other"], force=True)
    assert annotations.get_pair(store, made.id).chosen_id == db["a"]


def test_a_pair_of_one_answer_with_itself_is_refused(db):
    with pytest.raises(AnnotationRefused, match="two different"):
        annotations.pair(db["store"], db["a"], db["a"])


def test_undoing_a_pair_takes_back_the_pair_and_both_labels(db):
    store = db["store"]
    annotations.rate(store, db["a"], 2)
    made = annotations.pair(store, db["b"], db["a"])
    now = annotations.undo(store, db["b"])
    assert now is None  # the pair was b's only label
    assert annotations.current(store, db["a"]).preference is None
    assert annotations.current(store, db["a"]).rating == 2
    assert annotations.get_pair(store, made.id).undone_at is not None
    with pytest.raises(AnnotationRefused, match="already undone"):
        annotations.undo_pair(store, made.id)


def test_a_correction_is_stored_on_the_label(db):
    store = db["store"]
    label = annotations.correct(store, db["a"], "You spent $118.50 on food in March.")
    assert label.corrected_response == "You spent $118.50 on food in March."
    with pytest.raises(AnnotationRefused, match="empty"):
        annotations.correct(store, db["a"], "   ")
    assert len(rows(store)) == 1


def test_bulk_annotation_is_all_or_nothing(db):
    store = db["store"]
    written = annotations.annotate_many(store, [db["a"], db["b"]], rating=4, add_tags=["march"])
    assert [a.rating for a in written] == [4, 4]
    with pytest.raises(NotFound):
        annotations.annotate_many(store, [db["a"], "missing"], rating=1)
    assert len(rows(store)) == 2
    assert annotations.current(store, db["a"]).rating == 4


def test_harvest_pairs_answers_whose_ratings_differ_by_two_stars(db):
    store = db["store"]
    annotations.rate(store, db["a"], 5)
    annotations.rate(store, db["b"], 4)
    annotations.rate(store, db["other"], 1)  # other context: never paired with a or b
    assert annotations.harvest_pairs(store) == []
    annotations.rate(store, db["b"], 2)
    assert len(annotations.harvest_pairs(store, dry_run=True)) == 1
    assert rows(store, "pairs") == []
    made = annotations.harvest_pairs(store)
    assert [(p.chosen_id, p.rejected_id, p.source) for p in made] == [(db["a"], db["b"], "rule")]
    assert annotations.harvest_pairs(store) == []  # not made twice
    rule_label = annotations.current(store, db["b"], source="rule", annotator="harvest")
    assert rule_label.preference == "rejected"
    assert annotations.effective_label(store, db["b"]).rating == 2  # the rule label carries no rating


def test_regenerate_captures_a_new_answer_in_the_same_run_context(db):
    store = db["store"]
    original = store.get_interaction(db["a"])
    new = annotations.regenerate(store, db["a"], "scripted:stronger", script=["You spent $118.50."])
    assert new.id != original.id
    assert (new.run_id, new.call_type, new.messages) == (original.run_id, original.call_type, original.messages)
    assert new.sequence_num == original.sequence_num + 1
    assert (new.provider, new.model, new.response_content) == ("scripted", "stronger", "You spent $118.50.")
    assert new.id in annotations.alternatives(store, db["a"])
    annotations.pair(store, new.id, db["a"])  # same context: the pair is accepted


def test_regenerate_refuses_an_interaction_of_a_deleted_run(db):
    before = db["store"].count()
    with pytest.raises(AnnotationRefused, match="deleted"):
        annotations.regenerate(db["store"], db["deleted"], "scripted:x", script=["no"])
    assert db["store"].count() == before


class Recorder:
    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def wilson_annotation_added(self, annotation, db_path):
        self.seen.append((annotation.interaction_id, annotation.rating, annotation.preference, db_path))


def test_the_annotation_added_hook_fires_after_each_write(db):
    recorder = Recorder()
    pm = plugins.plugin_manager()
    pm.register(recorder, name="test-recorder")
    try:
        store = db["store"]
        annotations.rate(store, db["a"], 3)
        annotations.pair(store, db["b"], db["a"])
        with pytest.raises(AnnotationRefused):
            annotations.rate(store, db["a"], 9)
    finally:
        pm.unregister(name="test-recorder")
    path = str(db["store"].path)
    assert recorder.seen == [
        (db["a"], 3, None, path),
        (db["b"], None, "chosen", path),
        (db["a"], 3, "rejected", path),
    ]


def test_full_text_search_indexes_new_interactions_lazily(db):
    store = db["store"]
    assert search.search(store, "spend food") == sorted(
        [db["a"], db["b"], db["deleted"]], key=lambda i: store.get_interaction(i).created_at, reverse=True
    )
    llm = LLM("scripted:x", db=str(store.path), script=["Your rent is due"])
    new = llm.chat([{"role": "user", "content": "When is rent due?"}]).interaction_id
    assert search.search(store, "rent") == [new]
    assert search.search(store, 'rent" OR (') == []  # typed operators are words, never syntax errors
    assert search.search(store, "ren*") == [new]


def test_the_search_migration_upgrades_a_database_of_the_previous_version(tmp_path):
    path = tmp_path / "old.db"
    llm = LLM("scripted:x", db=str(path), script=["Your rent is due on the 1st"])
    interaction_id = llm.chat([{"role": "user", "content": "When is rent due?"}]).interaction_id
    conn = sqlite3.connect(path)
    with conn:  # make it a database from before m006
        conn.execute("DROP TABLE interactions_fts")
        conn.execute("DROP TABLE search_index_state")
        conn.execute("DROP INDEX idx_annotations_source_status")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm006_create_search_index'")
    conn.close()
    from wilson_core.store import sink

    sink.forget_stores()
    store = open_store(path)
    assert search.search(store, "rent") == [interaction_id]
    names = {r[0] for r in store.connection().execute("SELECT name FROM _sqlite_migrations")}
    assert "m006_create_search_index" in names


def test_an_empty_change_is_refused(db):
    with pytest.raises(AnnotationRefused, match="nothing to change"):
        annotations.annotate(db["store"], db["a"])
    with pytest.raises(AnnotationRefused, match="nothing to change"):
        annotations.annotate_many(db["store"], [db["a"], db["b"]])
    assert rows(db["store"]) == []


def test_undoing_a_pair_keeps_a_later_rating_of_the_partner(db):
    store = db["store"]
    made = annotations.pair(store, db["b"], db["a"])
    annotations.rate(store, db["a"], 1, notes="wrong total")  # after the pair
    annotations.undo(store, db["b"])
    partner = annotations.current(store, db["a"])
    assert (partner.rating, partner.notes, partner.preference, partner.pair_id) == (1, "wrong total", None, None)
    assert annotations.get_pair(store, made.id).undone_at is not None
