"""The dashboard shows, filters and sorts by the same label that counts as the export does.

Both read the store's view ``effective_labels``.  The dashboard's own copy of
the rule used to ignore accepted judge labels and to pick the newest version by
``rowid`` (insertion order) instead of ``version``: these tests fail on that.
"""

from __future__ import annotations

from pathlib import Path

from wilson_dashboard import queries

from wilson_core import annotations, open_store
from wilson_core.exporting import ExportOptions, run_export
from wilson_core.records import Annotation, Interaction
from wilson_core.store.writing import Batch


def _store(tmp_path: Path):
    store = open_store(tmp_path / "wilson.db")
    calls = [
        Interaction(run_id=f"run{n}", sequence_num=1, call_type="agent", provider="scripted", model="m",
                    messages=[{"role": "user", "content": f"question {n}"}], response_content=f"answer {n}")
        for n in range(3)
    ]
    store.write_interactions(calls)
    return store, [c.id for c in calls]


def test_an_accepted_judge_label_counts_in_the_dashboard(tmp_path):
    store, ids = _store(tmp_path)
    judged = annotations.annotate(store, ids[0], rating=5, source="judge", annotator="judge:x", status="proposed")
    annotations.accept(store, [ids[0]])
    annotations.rate(store, ids[1], 2)
    conn = store.connection()
    human, judge = queries.labels_for(conn, [ids[0]])[ids[0]]
    assert human is not None and human.rating == 5 and human.source == "judge" and human.status == "accepted"
    assert judge is not None and judge.interaction_id == judged.interaction_id
    five = queries.Filters(min_rating=5)
    assert queries.count(conn, five) == 1
    assert [item["id"] for item in queries.page(conn, five)["items"]] == [ids[0]]
    assert queries.count(conn, queries.Filters(), queries.ANNOTATED_SQL) == 2
    rated = [item["id"] for item in queries.page(conn, queries.Filters(sort="rating_desc"))["items"]]
    assert rated[:2] == [ids[0], ids[1]]
    # the export counts the accepted judge label too when asked to include judge labels
    assert annotations.effective_label(store, ids[0], include_judge=True).rating == 5
    assert annotations.effective_label(store, ids[0]) is None


def test_a_proposal_is_shown_as_the_judge_label_only(tmp_path):
    store, ids = _store(tmp_path)
    annotations.annotate(store, ids[0], rating=5, source="judge", annotator="judge:x", status="proposed")
    human, judge = queries.labels_for(store.connection(), [ids[0]])[ids[0]]
    assert human is None and judge.rating == 5 and judge.status == "proposed"
    assert queries.count(store.connection(), queries.Filters(min_rating=1)) == 0


def test_the_newest_version_wins_whatever_order_the_rows_were_written_in(tmp_path):
    """Versions copied or imported out of order: the higher version counts, not the later row."""
    store, ids = _store(tmp_path)
    when = "2026-01-01T00:00:00.000000+00:00"
    newer = Annotation(interaction_id=ids[0], rating=2, version=2, created_at=when)
    older = Annotation(interaction_id=ids[0], rating=5, version=1, created_at=when)
    store.write_batch(Batch(annotations=[newer, older]))  # the older version gets the later rowid
    conn = store.connection()
    human, _ = queries.labels_for(conn, [ids[0]])[ids[0]]
    assert human.rating == 2 and human.version == 2
    assert queries.count(conn, queries.Filters(min_rating=5)) == 0
    assert [i["id"] for i in queries.page(conn, queries.Filters(min_rating=5))["items"]] == []
    assert queries.count(conn, queries.Filters(max_rating=2)) == 1
    assert annotations.effective_label(store, ids[0]).rating == 2
    # and the export agrees: no 5-star example, the 2-star one is undesirable
    out = tmp_path / "out.jsonl"
    run_export(store, ExportOptions(format="sft", min_rating=5), out)
    assert out.read_text(encoding="utf-8") == ""
    run_export(store, ExportOptions(format="sft", min_rating=2), out)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
