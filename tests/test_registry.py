"""The model registry: ids, lineage, scores, promote/rollback, and ``wilson models``."""

from __future__ import annotations

import json

import pytest

from wilson_core import annotations, open_store
from wilson_core.cli import main
from wilson_core.errors import NotFound
from wilson_core.interfaces import EvalScore
from wilson_core.records import Interaction
from wilson_core.store.registry import Registry, RegistryError, model_id_for


@pytest.fixture()
def store(store_location):
    """A store with four interactions, once in an SQLite file and once in a PostgreSQL database."""
    store = open_store(store_location)
    store.write_interactions([
        Interaction(run_id=f"r{i}", sequence_num=1, call_type="c", provider="p", model="m",
                    messages=[{"role": "user", "content": f"q{i}"}], response_content=f"a{i}")
        for i in range(4)
    ])
    yield store
    store.close()


def ids(store):
    return [row[0] for row in store.connection().execute("SELECT id FROM interactions ORDER BY id")]


def register(registry, model_id, examples, **extra):
    return registry.register(model_id, base="tiny", trainer="lora-sft", settings={"lr": 0.1}, export_hash="h" + model_id,
                             manifest=None, counts={"train": 3, "eval": 1}, path=f"/runs/{model_id}",
                             pipeline_run="001", examples=examples, **extra)


def test_model_ids_follow_the_export_and_the_settings_only():
    one = model_id_for("abc", "lora-sft", "tiny", {"lr": 0.1, "max_steps": 5})
    assert one == model_id_for("abc", "lora-sft", "tiny", {"max_steps": 5, "lr": 0.1})
    assert one != model_id_for("abd", "lora-sft", "tiny", {"lr": 0.1, "max_steps": 5})
    assert one != model_id_for("abc", "lora-sft", "tiny", {"lr": 0.2, "max_steps": 5})
    assert one.startswith("m-") and len(one) == 14


def test_lineage_keeps_the_label_versions_that_counted(store):
    registry = Registry(store)
    first, second = ids(store)[:2]
    annotations.rate(store, first, 5)
    annotations.correct(store, first, "better")  # version 2 of the same stream
    labels = registry.current_labels(ids(store))
    assert set(labels) == {first} and labels[first][1] == 2
    examples = [(first, "train", *labels[first]), (second, "eval", None, None)]
    assert register(registry, "m-1", examples) is True
    assert register(registry, "m-1", examples) is False  # the same model is registered once
    assert registry.examples("m-1") == [
        {"interaction_id": second, "split": "eval", "annotation_id": None, "label_version": None},
        {"interaction_id": first, "split": "train", "annotation_id": labels[first][0], "label_version": 2},
    ]
    assert registry.labels_since(None) == 2


def test_promote_and_rollback_switch_the_live_model(store):
    registry = Registry(store)
    for model_id in ("m-a", "m-b", "m-c"):
        register(registry, model_id, [])
    assert registry.live() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    assert registry.promote("m-a") is None
    with pytest.raises(RegistryError, match="first live model"):
        registry.rollback()
    assert registry.promote("m-b") == "m-a"
    assert registry.promote("m-c") == "m-b"
    assert registry.rollback() == ("m-c", "m-b")
    assert registry.live() == "m-b" and registry.get("m-c").status == "rolled-back"
    assert registry.rollback() == ("m-b", "m-a")
    assert registry.live() == "m-a" and registry.get("m-a").status == "live"
    with pytest.raises(NotFound):
        registry.promote("m-zzz")


def test_refused_candidates_keep_the_reason_and_scores_are_per_run(store):
    registry = Registry(store)
    register(registry, "m-a", [])
    registry.record_scores("m-a", "001", {("all", "exact-match"): EvalScore(0.5, 10, 0.2, 0.8)})
    registry.record_gate("m-a", {"promote": False, "reason": "refused: exact-match on all"})
    entry = registry.get("m-a")
    assert entry.status == "refused" and entry.gate["reason"].startswith("refused")
    assert [(s["eval_set"], s["value"], s["count"]) for s in entry.scores] == [("all", 0.5, 10)]
    assert [e["action"] for e in registry.events("m-a")] == ["register", "refuse"]


def test_models_commands(store, tmp_path, capsys):
    registry = Registry(store)
    first = ids(store)[0]
    register(registry, "m-aaa111", [(first, "train", None, None)])
    register(registry, "m-bbb222", [])
    db = str(store.path)
    assert main(["--db", db, "models", "promote", "m-aaa"]) == 0  # a unique prefix is enough
    assert main(["--db", db, "models", "promote", "m-bbb222"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "models"]) == 0
    listing = capsys.readouterr().out
    assert "* m-bbb222" in listing and "  m-aaa111" in listing and "retired" in listing
    assert main(["--db", db, "models", "show", "m-aaa111", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["examples"] == [{"interaction_id": first, "split": "train", "annotation_id": None,
                                  "label_version": None}]
    assert main(["--db", db, "models", "rollback"]) == 0
    assert "m-aaa111 is live" in capsys.readouterr().out or registry.live() == "m-aaa111"
    assert main(["--db", db, "models", "show", "m-nope"]) == 1
    assert "no model 'm-nope'" in capsys.readouterr().err
    assert main(["--db", db, "models", "rollback"]) == 1
    assert "first live model" in capsys.readouterr().err


def test_logging_and_checkpoint_settings_do_not_change_the_id():
    settings = {"lr": 0.1, "max_steps": 5}
    assert model_id_for("h", "t", "b", settings) == model_id_for("h", "t", "b", {**settings, "save_steps": 2,
                                                                              "logging_steps": 1})


def test_a_read_only_database_reads_as_an_empty_registry(tmp_path, capsys):
    from test_cli_adversarial import read_only

    folder = tmp_path / "ro"
    with read_only(folder) as lock:
        open_store(folder / "ro.db").close()
        lock()
        assert main(["--db", str(folder / "ro.db"), "models"]) == 0
        assert "No models yet" in capsys.readouterr().out
        assert main(["--db", str(folder / "ro.db"), "models", "rollback"]) == 1
        assert "nothing to roll back" in capsys.readouterr().err


def test_the_live_provider_follows_promotion_and_rollback(store):
    registry = Registry(store)
    assert registry.live_provider() is None
    register(registry, "m-a", [])
    register(registry, "m-b", [])
    registry.promote("m-a")
    assert registry.live_provider() == "transformers:/runs/m-a"
    registry.record_deployment("m-a", "gguf", "/deploy/gguf", "llamacpp:/deploy/gguf/merged-f32.gguf", True)
    assert registry.live_provider() == "llamacpp:/deploy/gguf/merged-f32.gguf"
    registry.promote("m-b")
    assert registry.live_provider() == "transformers:/runs/m-b"
    registry.rollback()
    assert registry.live_provider() == "llamacpp:/deploy/gguf/merged-f32.gguf"


def test_the_live_version_changes_with_promotion_rollback_and_deployment(store):
    registry = Registry(store)
    assert registry.live_version() is None
    register(registry, "m-a", [])
    register(registry, "m-b", [])
    registry.promote("m-a")
    first = registry.live_version()
    assert first is not None and first[0] == "m-a"
    assert registry.live_version() == first  # nothing changed: the same token
    registry.record_deployment("m-a", "gguf", "/deploy/gguf", "llamacpp:/deploy/a.gguf", True)
    deployed = registry.live_version()
    assert deployed != first and deployed[0] == "m-a"
    registry.promote("m-b")
    assert registry.live_version()[0] == "m-b"
    registry.rollback()
    assert registry.live_version()[0] == "m-a" and registry.live_version() != deployed  # a new 'since'


def test_scores_of_a_run_are_replaced_when_recorded_again(store):
    registry = Registry(store)
    register(registry, "m-a", [])
    registry.record_scores("m-a", "001", {("all", "exact-match"): EvalScore(0.5, 10, 0.2, 0.8)})
    registry.record_scores("m-a", "001", {("all", "exact-match"): EvalScore(0.7, 12, 0.4, 0.9)})
    assert [(s["value"], s["count"], s["low"]) for s in registry.scores("m-a")] == [(0.7, 12, 0.4)]


def test_registries_opened_at_once_on_a_new_database_make_the_tables_once(store_location):
    import threading

    open_store(store_location).close()
    stores = [open_store(store_location) for _ in range(4)]
    errors: list[BaseException] = []

    def open_registry(one):
        try:
            Registry(one)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_registry, args=(one,)) for one in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    registry = Registry(stores[0])
    register(registry, "m-a", [])
    assert [m.id for m in Registry(stores[3]).models()] == ["m-a"]
    if store_location.startswith("postgresql"):
        rows = stores[0].connection().execute(
            "SELECT name FROM wilson_migrations WHERE migration_set = 'wilson_registry'").fetchall()
        assert [r[0] for r in rows] == ["m001_create_registry_tables"]
    for one in stores:
        one.close()


def test_ab_items_picks_and_outcomes(store):
    registry = Registry(store)
    first, second, third, fourth = ids(store)
    registry.add_ab_item("ab-1", "001", "fixed:1", "fixed", [("candidate", first), ("base", second)])
    registry.add_ab_item("ab-2", "001", "fixed:2", "fixed", [("base", third), ("candidate", fourth)])
    assert registry.ab_counts() == {"items": 2, "picked": 0} and registry.next_ab_item("001") == "ab-1"
    item = registry.ab_item("ab-1")
    assert [(a["slot"], a["system"]) for a in item["answers"]] == [(0, "candidate"), (1, "base")]
    registry.add_ab_pick("ab-1", 0, "local", ["p-1"])  # the candidate chosen
    registry.add_ab_pick("ab-2", None, "local", [])  # a tie
    assert registry.ab_counts("001") == {"items": 2, "picked": 2} and registry.next_ab_item() is None
    assert registry.ab_outcomes("candidate") == [1.0, 0.5]
    assert registry.ab_outcomes("base", against="candidate") == [0.0, 0.5]
    assert registry.ab_outcomes("upstream") == []
    with pytest.raises(NotFound):
        registry.ab_item("ab-zzz")
