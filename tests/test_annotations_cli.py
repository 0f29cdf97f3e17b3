"""``wilson annotate ...`` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wilson_core import LLM, annotations, open_store
from wilson_core.cli import main


@pytest.fixture
def db(tmp_path: Path) -> dict:
    path = tmp_path / "wilson.db"
    llm = LLM("scripted:small", db=str(path), script=["$120", "$118.50", "Hi"])
    question = [{"role": "system", "content": "Finance helper."}, {"role": "user", "content": "Food spend?"}]
    a = llm.chat(question).interaction_id
    b = llm.chat(question).interaction_id
    c = llm.chat([{"role": "user", "content": "Hello"}]).interaction_id
    return {"path": str(path), "a": a, "b": b, "c": c}


def wilson(db, *args: str) -> int:
    return main(["--db", db["path"], "annotate", *args])


def test_rate_with_note_and_tag_then_history_and_undo(db, capsys):
    assert wilson(db, "rate", db["a"], "4", "--note", "fine", "--tag", "food") == 0
    assert wilson(db, "rate", db["a"], "2") == 0
    capsys.readouterr()
    assert wilson(db, "history", db["a"], "--json") == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [(v["rating"], v["notes"], v["tags"]) for v in versions] == [(4, "fine", ["food"]), (2, "fine", ["food"])]
    assert wilson(db, "undo", db["a"]) == 0
    assert "★★★★☆" in capsys.readouterr().out
    assert annotations.current(open_store(db["path"]), db["a"]).rating == 4


def test_refusals_print_an_error_without_a_traceback_and_write_nothing(db, capsys):
    assert wilson(db, "rate", db["a"], "6") == 1
    assert wilson(db, "rate", "no-such-id", "3") == 1
    assert wilson(db, "pair", db["a"], db["c"]) == 1
    err = capsys.readouterr().err
    assert "Error: a rating is a whole number of stars from 1 to 5, got 6" in err
    assert "Error: no interaction with id 'no-such-id'" in err
    assert "different contexts" in err and "Traceback" not in err
    assert open_store(db["path"]).count("annotations") == 0


def test_pair_correct_and_harvest(db, capsys):
    assert wilson(db, "pair", db["b"], db["a"]) == 0
    assert wilson(db, "pair", db["a"], db["c"], "--force") == 0
    assert wilson(db, "correct", db["a"], "--response", "You spent $118.50 on food.") == 0
    store = open_store(db["path"])
    assert annotations.current(store, db["a"]).corrected_response == "You spent $118.50 on food."
    assert len(annotations.pairs_of(store, db["a"])) == 2
    assert wilson(db, "rate", db["a"], "1") == 0 and wilson(db, "rate", db["b"], "5") == 0
    capsys.readouterr()
    assert wilson(db, "harvest-pairs", "--json") == 0
    made = json.loads(capsys.readouterr().out)
    assert [(p["chosen_id"], p["rejected_id"], p["source"]) for p in made] == []  # already paired b > a
    assert wilson(db, "undo", db["b"]) == 0  # takes back the 5 stars of b
    assert wilson(db, "undo", db["b"]) == 0  # takes back the pair b > a
    assert wilson(db, "rate", db["b"], "5") == 0
    capsys.readouterr()
    assert wilson(db, "harvest-pairs", "--json") == 0
    made = json.loads(capsys.readouterr().out)
    assert [(p["chosen_id"], p["rejected_id"], p["source"]) for p in made] == [(db["b"], db["a"], "rule")]


def test_regenerate_then_pick(db, tmp_path, capsys):
    script = tmp_path / "replies.jsonl"
    script.write_text(json.dumps("You spent exactly $118.50 on food.") + "\n")
    assert wilson(db, "regenerate", db["a"], "--provider", "scripted:big", "--option", f"script={script}", "--json") == 0
    new = json.loads(capsys.readouterr().out)
    assert new["response_content"] == "You spent exactly $118.50 on food." and new["model"] == "big"
    assert wilson(db, "pair", new["id"], db["a"]) == 0


def test_import_judge_accept_and_reject(db, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,rating,tags\n{db['c']},3,greeting\n")
    assert wilson(db, "import", str(labels)) == 0
    assert "imported 1 label(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text(f"id,rating\n{db['c']},9\n")
    assert wilson(db, "import", str(bad)) == 1
    assert "line 2" in capsys.readouterr().err
    verdicts = tmp_path / "verdicts.jsonl"
    verdict = {"scores": {"correctness": 4, "helpfulness": 4}, "rationale": "ok"}
    verdicts.write_text((json.dumps(json.dumps(verdict)) + "\n") * 3)
    assert wilson(
        db, "judge", "--provider", "scripted:judge", "--option", f"script={verdicts}",
        "--criterion", "correctness=2", "--criterion", "helpfulness=1", "--limit", "3",
    ) == 0
    assert "3 proposal(s) written" in capsys.readouterr().out
    assert wilson(db, "accept", db["a"]) == 0
    assert wilson(db, "reject", "--all") == 0
    assert "rejected 2 proposal(s)" in capsys.readouterr().out
    assert wilson(db, "accept", "--all") == 1
    store = open_store(db["path"])
    statuses = dict(store.connection().execute(
        "SELECT interaction_id, status FROM current_annotations WHERE source = 'judge'").fetchall())
    assert statuses == {db["a"]: "accepted", db["b"]: "rejected", db["c"]: "rejected"}
