"""Examples from rows: one builder per kind of example (answers, rated answers, pairs, runs).

The export pipeline streams what these build; the fast count (``counting``) runs the
same builders on the rows SQLite alone cannot decide, so both always agree.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from wilson_core.store import selection

from .examples import (
    ANSWER,
    PAIR,
    RATED,
    Example,
    MalformedExample,
    assistant_message,
    merge_run,
    message_key,
    normalize,
    tool_message,
)
from .options import ExportError, ExportOptions
from .select import (
    context_of,
    explicit_pairs,
    harvested_pairs,
    iter_rows,
    rows_by_id,
    tags_of,
    tool_calls_of,
    tool_results_for,
    tools_of,
    where_clause,
)

TRAIN = "train"
EVAL = "eval"


class Stats:
    """What the manifest says about one export, gathered while it streams."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.examples = 0
        self.lines = {TRAIN: 0, EVAL: 0}
        self.over_length: list[dict[str, Any]] = []
        self.over_length_count = 0
        self.origins: Counter[str] = Counter()


# -- examples ------------------------------------------------------------------


def _label_fields(row: Any) -> dict[str, Any]:
    return {
        "rating": row["rating"],
        "run_id": row["run_id"],
        "call_type": row["call_type"] or "",
        "model": row["model"] or "",
        "provider": row["provider"] or "",
        "tags": tags_of(row),
    }


def _answer(row: Any) -> dict[str, Any]:
    answer = assistant_message(row["response_content"], tool_calls_of(row))
    if not answer["content"] and not answer.get("tool_calls"):
        raise MalformedExample("empty_answer")
    return answer


def _answer_example(row: Any, stats: Stats) -> Example | None:
    """The SFT example of one selected row, or ``None`` (counted in ``stats``) when it is malformed."""
    try:
        prompt = normalize(context_of(row))
        corrected = row["corrected_response"]
        if corrected is not None:
            completion, origin = assistant_message(corrected), "correction"
        else:
            completion, origin = _answer(row), ANSWER
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    tags = row["tags_json"]
    return Example(
        kind=ANSWER,
        prompt=prompt,
        completion=(completion,),
        tools=tools_of(row),
        interaction_ids=(row["id"],),
        origin=origin,
        rating=row["rating"],
        run_id=row["run_id"],
        call_type=row["call_type"] or "",
        model=row["model"] or "",
        provider=row["provider"] or "",
        tags=json.loads(tags) if tags else (),
    )


def _answer_examples(conn: Any, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options)
    for row in iter_rows(conn, where, params):  # the hot loop of big exports: kept lean
        example = _answer_example(row, stats)
        if example is not None:
            yield example


def _kto_label(row: Any, options: ExportOptions) -> bool | None:
    rating = row["rating"]
    if rating is not None:
        if rating >= options.kto_desirable:
            return True
        if rating <= options.kto_undesirable:
            return False
        return None
    if row["corrected_response"] is not None:
        return False  # a corrected answer was not good enough
    return {"chosen": True, "rejected": False}.get(row["preference"] or "")


def rated_where(options: ExportOptions) -> tuple[str, dict[str, Any]]:
    """The rows KTO examples come from: rated, corrected or marked chosen/rejected."""
    where, params = where_clause(options)
    return f"{where} AND {selection.RATED}", params


def _rated_row_examples(row: Any, options: ExportOptions, stats: Stats) -> list[Example]:
    """The KTO examples of one selected row (none when it is malformed)."""
    try:
        prompt = normalize(context_of(row))
        answer = _answer(row)
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return []
    common = {"prompt": prompt, "tools": tools_of(row), "interaction_ids": (row["id"],), **_label_fields(row)}
    examples = []
    label = _kto_label(row, options)
    if label is None:
        stats.skipped["rating_between_thresholds"] += 1
    else:
        examples.append(Example(kind=RATED, completion=(answer,), label=label, origin=ANSWER, **common))
    if row["corrected_response"] is not None:
        examples.append(
            Example(
                kind=RATED,
                completion=(assistant_message(row["corrected_response"]),),
                label=True,
                origin="correction",
                **common,
            )
        )
    return examples


def _rated_examples(conn: Any, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = rated_where(options)
    for row in iter_rows(conn, where, params):
        yield from _rated_row_examples(row, options, stats)


def _pair(chosen: Any, rejected: Any, origin: str, stats: Stats) -> Example | None:
    try:
        prompt = normalize(context_of(chosen))
        chosen_answer = _answer(chosen)
        rejected_answer = _answer(rejected)
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    if chosen["context_hash"] != rejected["context_hash"]:
        stats.skipped["pair_with_different_contexts"] += 1
        return None
    if message_key(chosen_answer) == message_key(rejected_answer):
        stats.skipped["identical_pair"] += 1
        return None
    return Example(
        kind=PAIR,
        prompt=prompt,
        completion=(chosen_answer,),
        rejected=(rejected_answer,),
        tools=tools_of(chosen),
        interaction_ids=(chosen["id"], rejected["id"]),
        origin=origin,
        **_label_fields(chosen),
    )


def _explicit_pair_examples(
    conn: Any,
    options: ExportOptions,
    stats: Stats,
    seen: set[tuple[str, str]],
) -> Iterator[Example]:
    """DPO examples of the ``pairs`` table; the pairs taken go into ``seen``."""
    where, params = where_clause(options, rating=False)
    for pair in explicit_pairs(conn, options):
        chosen_ids = {row["id"] for row in iter_rows(conn, f"{where} AND {selection.id_is('pair_chosen')}", {**params, "pair_chosen": pair["chosen_id"]})}
        if pair["chosen_id"] not in chosen_ids:
            continue  # filtered out, failed, or in a deleted run
        rows = rows_by_id(conn, [pair["chosen_id"], pair["rejected_id"]], options)
        if pair["rejected_id"] not in rows:
            stats.skipped["pair_rejected_unavailable"] += 1
            continue
        seen.add((pair["chosen_id"], pair["rejected_id"]))
        example = _pair(rows[pair["chosen_id"]], rows[pair["rejected_id"]], f"pair:{pair['source']}", stats)
        if example is not None:
            yield example


def _correction_pair(row: Any, stats: Stats) -> Example | None:
    """The corrected answer chosen over the original one (``None`` when malformed or identical)."""
    try:
        original = _answer(row)
        prompt = normalize(context_of(row))
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    corrected = assistant_message(row["corrected_response"])
    if message_key(corrected) == message_key(original):
        stats.skipped["identical_pair"] += 1
        return None
    return Example(
        kind=PAIR,
        prompt=prompt,
        completion=(corrected,),
        rejected=(original,),
        tools=tools_of(row),
        interaction_ids=(row["id"],),
        origin="correction",
        **_label_fields(row),
    )


def _harvested_pair(
    conn: Any, options: ExportOptions, chosen_id: str, rejected_id: str, stats: Stats
) -> Example | None:
    rows = rows_by_id(conn, [chosen_id, rejected_id], options)
    return _pair(rows[chosen_id], rows[rejected_id], "harvested", stats)


def _pair_examples(conn: Any, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options, rating=False)
    seen: set[tuple[str, str]] = set()
    yield from _explicit_pair_examples(conn, options, stats, seen)
    for row in iter_rows(conn, f"{where} AND {selection.CORRECTED}", params):
        example = _correction_pair(row, stats)
        if example is not None:
            yield example
    if not options.harvest_pairs:
        return
    for chosen_id, rejected_id in harvested_pairs(conn, options, where, params):
        if (chosen_id, rejected_id) in seen:
            continue
        example = _harvested_pair(conn, options, chosen_id, rejected_id, stats)
        if example is not None:
            yield example


def _run_example(conn: Any, rows: list[Any], options: ExportOptions, stats: Stats) -> Example | None:
    if options.min_rating is not None:
        rated = [r for r in rows if r["rating"] is not None or r["corrected_response"] is not None]
        if not rated or any(
            r["corrected_response"] is None and r["rating"] < options.min_rating for r in rated
        ):
            stats.skipped["run_below_min_rating"] += 1
            return None
    results = tool_results_for(conn, [r["id"] for r in rows])
    steps = []
    tools: dict[str, dict[str, Any]] = {}
    used: list[Any] = []
    try:
        for row in rows:
            for tool in tools_of(row):
                tools[json.dumps(tool.get("function", tool).get("name"))] = tool
            context = normalize(context_of(row))
            used.append(row)
            if row["corrected_response"] is not None:
                # the rest of the run was conditioned on the answer that was corrected
                steps.append((context, assistant_message(row["corrected_response"]), []))
                break
            answer = _answer(row)
            recorded = [
                tool_message(r["tool_name"] or "tool", r["content"], r["tool_call_id"])
                for r in results.get(row["id"], [])
            ]
            steps.append((context, answer, recorded))
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    conversation = merge_run(steps)
    ratings = [r["rating"] for r in used if r["rating"] is not None]
    tags = sorted({t for r in used for t in tags_of(r)})
    first = used[0]
    return Example(
        kind=ANSWER,
        prompt=conversation[:-1],
        completion=conversation[-1:],
        tools=list(tools.values()),
        rating=min(ratings) if ratings else None,
        interaction_ids=tuple(r["id"] for r in used),
        run_id=first["run_id"],
        origin="run",
        call_type=first["call_type"] or "",
        model=first["model"] or "",
        provider=first["provider"] or "",
        tags=tags,
    )


def _run_examples(conn: Any, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options, rating=False)
    order = selection.RUN_ORDER
    group: list[Any] = []
    for row in iter_rows(conn, where, params, order_by=order):
        if group and row["run_id"] != group[0]["run_id"]:
            example = _run_example(conn, group, options, stats)
            if example is not None:
                yield example
            group = []
        group.append(row)
    if group:
        example = _run_example(conn, group, options, stats)
        if example is not None:
            yield example


def iter_examples(store: Any, options: ExportOptions, needs: str, stats: Stats | None = None) -> Iterator[Example]:
    """The examples an exporter that ``needs`` answers, pairs or ratings gets, before any stage."""
    conn = store.connection()
    stats = stats or Stats()
    if needs == "answers":
        if options.granularity == "run":
            return _run_examples(conn, options, stats)
        return _answer_examples(conn, options, stats)
    if needs == "ratings":
        return _rated_examples(conn, options, stats)
    if needs == "pairs":
        return _pair_examples(conn, options, stats)
    raise ExportError(f"exporter {options.format!r} needs {needs!r}: expected answers, pairs or ratings")


# -- stages ------------------------------------------------------------------
