"""count_records counts exactly the lines run_export writes, without building them when it can.

The store here is built to trip a count made in SQL: malformed and unusual tool
calls in prompts and answers, empty answers, corrections equal to the answer,
answers shared by several calls (harvested and identical pairs), explicit
pairs (one undone, one across contexts, one into a deleted run), judge
proposals, undone labels, failed calls and a deleted run.
"""

from __future__ import annotations

import random

import pytest

from wilson_core import annotations, open_store
from wilson_core.exporting import ExportOptions, count_records, pipeline, run_export
from wilson_core.records import STATUS_ERROR, Interaction, ToolCall

pytest.importorskip("wilson_exporters")

SYSTEMS = [None, "You are Wilson.", "You are Wilson, terse."]
QUESTIONS = ["Spend on food?", "Balance?", "Café Müller 4,50 € ☕?"]
GOOD_CALL = {"id": "c1", "type": "function", "function": {"name": "get_balance", "arguments": {"account": "x"}}}
#: stored prompt tool calls, clean or not (written as they are: the store keeps what it is given)
PROMPT_CALLS = [
    [GOOD_CALL],
    [{"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],  # string, valid
    [{"id": "c3", "type": "function", "function": {"name": "f", "arguments": "{not json"}}],  # malformed
    [{"id": "c4", "type": "function", "function": {"name": "f", "arguments": {}, "raw_arguments": "{x"}}],
    [{"id": "c5", "type": "function", "function": {"name": "", "arguments": {}}}],  # no name
    [{"id": "c6", "name": "flat", "args": {"k": "v"}}],  # Wilson's flat shape
    [{"id": "c7", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}],  # not an object
    [{"id": "c8", "type": "function", "function": {"name": "f"}}],  # no arguments: {}
    [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": None}}],
    [],
]
ANSWER_CALLS = [
    (),
    (ToolCall(id="a1", name="get_balance", arguments={"account": "checking"}),),
    (ToolCall(id="a2", name="f", arguments={}, raw_arguments="{broken"),),
    (ToolCall(id="a3", name="", arguments={}),),
]
TOOLS = [{"type": "function", "function": {"name": "get_balance", "parameters": {"type": "object"}}}]
TEXTS = ["Sure.", "", None, "You spent 212.40 EUR.", "Sure.", "Sure."]


def _messages(rng: random.Random) -> list[dict]:
    system = rng.choice(SYSTEMS)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": rng.choice(QUESTIONS)})
    if rng.random() < 0.5:
        calls = rng.choice(PROMPT_CALLS)
        messages.append({"role": "assistant", "content": rng.choice(["", "Looking."]), "tool_calls": calls})
        if calls:
            messages.append({"role": "tool", "content": "42", "tool_call_id": calls[0].get("id")})
            messages.append({"role": "user", "content": "And then?"})
    return messages


def build_tricky_store(path, seed: int):
    """Runs of 1-3 calls, labelled at random through the annotation API."""
    rng = random.Random(seed)
    store = open_store(path)
    ids: list[str] = []
    runs: list[str] = []
    for run in range(60):
        run_id = f"run{seed}-{run:03d}"
        runs.append(run_id)
        shared = _messages(rng)  # calls of a run often share a context (pairs to harvest)
        for step in range(rng.randint(1, 3)):
            messages = shared if rng.random() < 0.6 else _messages(rng)
            failed = rng.random() < 0.05
            interaction = Interaction(
                run_id=run_id,
                sequence_num=step + 1,
                call_type=rng.choice(["agent", "summarize"]),
                provider="scripted",
                model=rng.choice(["m1", "m2"]),
                messages=messages,
                response_content=None if failed else rng.choice(TEXTS),
                tool_calls=() if failed else rng.choice(ANSWER_CALLS),
                tools=TOOLS if rng.random() < 0.3 else (),
                status=STATUS_ERROR if failed else "ok",
                error="boom" if failed else None,
                created_at=f"2026-11-{1 + run % 20:02d}T08:{step:02d}:00.000000+00:00",
            )
            store.write_interaction(interaction)
            if not failed:
                ids.append(interaction.id)
    for interaction_id in ids:
        roll = rng.random()
        if roll < 0.7:
            annotations.annotate(
                store,
                interaction_id,
                rating=rng.choice([None, 1, 2, 3, 4, 5, 5]),
                tags=rng.choice([None, ["good"], ["good", "tools"], ["bad"]]),
                preference=rng.choice([None, None, "chosen", "rejected", "neutral"]),
                corrected_response=rng.choice([None, None, None, "Sure.", "Better answer.", ""]),
                notes="looked at",
            )
            if rng.random() < 0.15:
                annotations.annotate(store, interaction_id, rating=rng.choice([1, 3, 5]))
                annotations.undo(store, interaction_id)
        elif roll < 0.8:
            annotations.annotate(
                store, interaction_id, rating=rng.choice([1, 4, 5]), source="judge",
                annotator="judge:test", status=rng.choice(["proposed", "rejected"]),
            )
    made = []
    for _ in range(12):
        chosen, rejected = rng.sample(ids, 2)
        try:
            made.append(annotations.pair(store, chosen, rejected, force=rng.random() < 0.5))
        except annotations.AnnotationRefused:
            pass
    for undone in made[:: 3]:
        annotations.undo_pair(store, undone.id)
    conn = store.connection()
    deleted = rng.sample(runs, 4)
    marks = ",".join("?" * len(deleted))
    plain = (
        "{0}.status = 'ok' AND instr({0}.messages_json, 'tool_calls') = 0 AND {0}.tool_calls_json IS NULL"
        " AND {0}.response_content != '' AND {0}.run_id NOT IN (" + marks + ")"
    )
    shared = conn.execute(
        "SELECT a.id, b.id FROM interactions a JOIN interactions b ON a.context_hash = b.context_hash"
        f" AND a.rowid < b.rowid WHERE {plain.format('a')} AND {plain.format('b')}"
        " AND a.response_content != b.response_content ORDER BY a.rowid LIMIT 6",
        deleted + deleted,
    ).fetchall()
    for n, (chosen, rejected) in enumerate(shared):
        taken = annotations.pair(store, chosen, rejected)
        if n % 3 == 2:
            annotations.undo_pair(store, taken.id)
    for (same,) in conn.execute(
        f"SELECT id FROM interactions a WHERE {plain.format('a')} AND a.response_content = 'Sure.' LIMIT 3", deleted
    ).fetchall():
        annotations.annotate(store, same, corrected_response="Sure.")  # the same answer: no pair
    # explicit pairs that surely make lines: one kept, one undone
    for n, answers in enumerate([("Groceries: 212 EUR.", "No idea."), ("Rent is due.", "Ask later.")]):
        context = [{"role": "user", "content": f"Pair question {n}?"}]
        ids_of = []
        for step, text in enumerate(answers):
            made_call = Interaction(
                run_id=f"pairs{seed}-{n}", sequence_num=step + 1, call_type="agent", provider="scripted",
                model="m1", messages=context, response_content=text,
                created_at=f"2026-11-10T09:{n:02d}:{step:02d}.000000+00:00",
            )
            store.write_interaction(made_call)
            ids_of.append(made_call.id)
        taken = annotations.pair(store, ids_of[0], ids_of[1])
        if n == 1:
            annotations.undo_pair(store, taken.id)
    for run_id in deleted:
        conn.execute("UPDATE runs SET deleted_at = '2026-11-20T00:00:00+00:00' WHERE id = ?", (run_id,))
    return store


def written_lines(store, options: ExportOptions, tmp_path) -> int:
    out = tmp_path / "count-check.jsonl"
    manifest = run_export(store, options, out)
    files = [out] + ([out.with_name("count-check.eval.jsonl")] if options.eval_split else [])
    total = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files if f.exists())
    assert total == manifest["counts"]["total"]
    return total


OPTIONS = [
    {},
    {"min_rating": 4},
    {"min_rating": 1},
    {"call_types": ["summarize"]},
    {"tags": ["good"]},
    {"tags": ["good", "tools"], "min_rating": 3},
    {"include_judge": True},
    {"include_judge": True, "min_rating": 4},
    {"models": ["m2"], "since": "2026-11-05", "until": "2026-11-15"},
    {"eval_split": 0.3, "seed": 3},
    {"harvest_pairs": False},
    {"kto_desirable": 5, "kto_undesirable": 1},
]


@pytest.fixture(scope="module", params=[1, 3])
def tricky(request, tmp_path_factory):
    store = build_tricky_store(tmp_path_factory.mktemp("count") / "wilson.db", request.param)
    yield store
    store.close()


@pytest.mark.parametrize("fmt", ["sft", "openai-chat", "dpo", "kto"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_the_count_equals_the_lines_written_for_every_filter(tricky, tmp_path, fmt, options):
    opts = ExportOptions(format=fmt, **options)
    assert count_records(tricky, opts) == written_lines(tricky, opts, tmp_path)


@pytest.mark.parametrize(
    "options", [{}, {"min_rating": 4}, {"min_rating": 2}, {"tags": ["good"]}, {"include_judge": True, "min_rating": 3}],
    ids=lambda o: ",".join(o) or "defaults",
)
def test_the_count_equals_the_lines_written_per_run(tricky, tmp_path, options):
    opts = ExportOptions(format="sft", granularity="run", **options)
    assert count_records(tricky, opts) == written_lines(tricky, opts, tmp_path)


def test_the_store_really_holds_the_cases_the_count_must_get_right(tricky, tmp_path):
    manifest = run_export(tricky, ExportOptions(format="dpo"), tmp_path / "dpo.jsonl")
    skipped = manifest["counts"]["skipped"]
    assert skipped.get("malformed_tool_call") and skipped.get("identical_pair")
    origins = manifest["counts"]["by_origin"]
    assert origins.get("harvested") and origins.get("correction") and origins.get("pair:human")
    sft = run_export(tricky, ExportOptions(format="sft"), tmp_path / "sft.jsonl")["counts"]["skipped"]
    assert sft.get("empty_answer") and sft.get("malformed_tool_call")


def test_the_count_builds_no_line_when_sql_can_count(tricky, monkeypatch):
    expected = {fmt: count_records(tricky, ExportOptions(format=fmt)) for fmt in ("sft", "dpo", "kto")}

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the count ran the export pipeline")

    monkeypatch.setattr(pipeline, "_stream", no_pipeline)
    assert {fmt: count_records(tricky, ExportOptions(format=fmt)) for fmt in expected} == expected
    with pytest.raises(AssertionError, match="pipeline"):
        count_records(tricky, ExportOptions(format="sft", dedup=True))  # dedup needs every line


def test_an_exporter_that_may_refuse_examples_is_counted_by_the_pipeline(tricky, tmp_path, monkeypatch):
    from wilson_exporters.sft import SFTExporter

    class EveryOther(SFTExporter):
        keeps_every_example = False
        seen = 0

        def record(self, example):
            EveryOther.seen += 1
            return super().record(example) if EveryOther.seen % 2 else None

    opts = ExportOptions(format="sft")
    all_lines = count_records(tricky, opts)
    monkeypatch.setattr(pipeline, "load_exporter", lambda options: EveryOther())
    counted = count_records(tricky, opts)
    EveryOther.seen = 0
    assert counted == written_lines(tricky, opts, tmp_path)
    assert counted == (all_lines + 1) // 2


def test_a_subclass_that_overrides_record_does_not_inherit_the_promise():
    from wilson_exporters.sft import SFTExporter

    from wilson_core.exporting.counting import keeps_every_example

    class Filtering(SFTExporter):
        def record(self, example):
            return None if example.tools else super().record(example)

    class Renamed(SFTExporter):
        description = "the same lines"

    class Promised(Filtering):
        keeps_every_example = True

        def record(self, example):
            return {"messages": example.messages}

    assert keeps_every_example(SFTExporter()) and keeps_every_example(Renamed())
    assert not keeps_every_example(Filtering())
    assert keeps_every_example(Promised())


def test_a_subclass_that_filters_is_counted_exactly(tricky, tmp_path, monkeypatch):
    from wilson_exporters.sft import SFTExporter

    class NoTools(SFTExporter):
        def record(self, example):
            return None if example.tools else super().record(example)

    opts = ExportOptions(format="sft")
    every = count_records(tricky, opts)
    monkeypatch.setattr(pipeline, "load_exporter", lambda options: NoTools())
    counted = count_records(tricky, opts)
    assert counted == written_lines(tricky, opts, tmp_path) < every
