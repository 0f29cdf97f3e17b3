"""The data behind each view: stats cards, one interaction's detail, its shadows, a run."""

from __future__ import annotations

import time
from typing import Any

from wilson_core import annotations, converter
from wilson_core.errors import WilsonError
from wilson_core.store import Store, search, shadow

from . import queries

EXPORT_FORMATS = ("sft", "dpo", "kto")


def export_options(filters: queries.Filters, fmt: str, redact: bool = False) -> Any:
    """The export the stat cards count and the buttons download (SFT keeps answers rated 4+),
    redacted when the export setting says so (``[tool.wilson.export] redact``, as ``wilson export``)."""
    if fmt == "sft" and filters.min_rating is None:
        filters = _with_min_rating(filters, 4)
    return filters.export_options(fmt, redact=redact)


def _with_min_rating(filters: queries.Filters, stars: int) -> queries.Filters:
    import attrs

    return attrs.evolve(filters, min_rating=stars)


def labels_payload(store: Store, ids: list[str]) -> dict[str, Any]:
    """``{id: {"label": effective label, "judge": judge label}}`` for the page to redraw rows."""
    labels = queries.labels_for(store.connection(), ids)
    return {
        i: {"label": queries.label_dict(labels.get(i, (None, None))[0]), "judge": queries.label_dict(labels.get(i, (None, None))[1])}
        for i in ids
    }


def stats(store: Store, filters: queries.Filters) -> dict[str, Any]:
    conn = store.connection()
    if queries.needs_search_sync(filters):
        search.sync(store)
    started = time.perf_counter()
    total = queries.count(conn, filters)
    annotated = queries.count(conn, filters, queries.ANNOTATED_SQL)
    proposals = queries.count(conn, filters, queries.PROPOSED_SQL)
    result: dict[str, Any] = {
        "total": total,
        "annotated": annotated,
        "proposals": proposals,
        "export": {},
        "export_error": None,
    }
    try:
        from wilson_core.exporting import count_records
    except ImportError:
        result["export_error"] = "the export module is not installed"
        count_records = None
    if count_records is not None:
        # one thread per format: SQLite releases the GIL, so the three counts overlap
        from concurrent.futures import ThreadPoolExecutor

        def one(fmt: str) -> int:
            try:
                return count_records(store, export_options(filters, fmt))
            finally:
                store.close()  # this worker thread's connection

        with ThreadPoolExecutor(max_workers=len(EXPORT_FORMATS)) as pool:
            futures = {fmt: pool.submit(one, fmt) for fmt in EXPORT_FORMATS}
            for fmt, future in futures.items():
                try:
                    result["export"][fmt] = future.result()
                except WilsonError as exc:
                    result["export_error"] = str(exc)
    result["query_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def detail(store: Store, interaction_id: str, *, full: bool = True) -> dict[str, Any]:
    """Everything about one interaction: messages, tools, response, tool calls with results, labels."""
    interaction = store.get_interaction(interaction_id)
    data = converter.unstructure(interaction)
    results = store.tool_results(interaction_id)
    by_call = {r.tool_call_id: converter.unstructure(r) for r in results}
    data["tool_calls"] = [
        {**converter.unstructure(c), "result": by_call.pop(c.id, None)} for c in interaction.tool_calls
    ]
    data["unlinked_tool_results"] = list(by_call.values())
    labels = queries.labels_for(store.connection(), [interaction_id]).get(interaction_id, (None, None))
    data["label"] = queries.label_dict(labels[0])
    data["judge"] = queries.label_dict(labels[1])
    data["run_deleted"] = bool(queries.run_deleted_at(store.connection(), interaction.run_id))
    if full:
        data["history"] = [
            {**queries.label_dict(v.annotation), "undone_at": v.undone_at}
            for v in annotations.history(store, interaction_id)
        ]
        data["pairs"] = converter.unstructure(annotations.pairs_of(store, interaction_id))
        data["alternatives"] = len(annotations.alternatives(store, interaction_id))
        data["shadows"] = len(shadow.shadows_of_context(store.connection(), interaction_id))
    return data


def shadow_view(store: Store, interaction_id: str) -> dict[str, Any]:
    """The upstream answer and the local models' shadow answers to its context (wilson proxy shadow routes)."""
    from wilson_core.shadowing import answer_key

    store.get_interaction(interaction_id)  # NotFound -> 404
    items = [
        {
            "route": pair["route"],
            "exact_match": pair["shadow"]["status"] == "ok" and answer_key(pair["shadow"]) == answer_key(pair["upstream"]),
            "upstream": detail(store, pair["upstream"]["id"], full=False),
            "shadow": detail(store, pair["shadow"]["id"], full=False),
        }
        for pair in shadow.shadows_of_context(store.connection(), interaction_id)[:20]
    ]
    return {"items": items}


def run_view(store: Store, run_id: str) -> dict[str, Any]:
    from wilson_core.store.listing import resolve_id

    run_id = resolve_id(store, run_id, "run")  # /runs/SHORT_ID works as on the command line
    run = store.get_run(run_id)
    calls = store.run_interactions(run_id)
    labels = queries.labels_for(store.connection(), [c.id for c in calls])
    steps = []
    seen = 0
    for call in calls:
        results = {r.tool_call_id: r for r in store.tool_results(call.id)}
        new_messages = list(call.messages[seen:]) if seen <= len(call.messages) else list(call.messages)
        seen = len(call.messages) + 1
        human = labels.get(call.id, (None, None))[0]
        steps.append(
            {
                "call": call,
                "new_messages": new_messages,
                "tool_calls": [(c, results.get(c.id)) for c in call.tool_calls],
                "rating": human.rating if human else None,
            }
        )
    return {"run": run, "steps": steps}
