"""The JSON API (``/api/*``): reading the captured calls, labelling them, exporting them."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from wilson_core import annotations, converter
from wilson_core.errors import AnnotationRefused, NotFound, RecordError
from wilson_core.store import Store, search

from . import queries
from .inputs import check_regenerate, int_param, json_body, label_fields, string_list
from .views import EXPORT_FORMATS, detail, export_options, labels_payload, shadow_view, stats

if TYPE_CHECKING:
    from .app import Settings


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn`` run in a worker thread (the store's queries block)."""
    return await run_in_threadpool(fn, *args, **kwargs)


def filters_of(request: Request) -> queries.Filters:
    return queries.Filters.from_query(request.query_params)


def routes(store: Store, settings: Settings, redaction: Any) -> list[Route]:
    """The API over ``store``; labels are written as ``settings.annotator``; exports follow ``redaction``."""
    facet_cache: dict[str, Any] = {}

    def with_search(filters: queries.Filters) -> None:
        if queries.needs_search_sync(filters):
            search.sync(store)

    # -- API: reading --------------------------------------------------------------

    async def api_interactions(request: Request) -> Response:
        filters = filters_of(request)
        limit = int_param(request.query_params.get("limit"), "limit", queries.PAGE_SIZE, 1, queries.MAX_PAGE_SIZE)

        def work() -> dict[str, Any]:
            with_search(filters)
            started = time.perf_counter()
            result = queries.page(store.connection(), filters, cursor=request.query_params.get("cursor"), limit=limit)
            result["query_ms"] = round((time.perf_counter() - started) * 1000, 2)
            return result

        return JSONResponse(await call(work))

    async def api_stats(request: Request) -> Response:
        filters = filters_of(request)
        return JSONResponse(await call(stats, store, filters))

    async def api_facets(request: Request) -> Response:
        def work() -> dict[str, Any]:
            cached = facet_cache.get("facets")
            if cached and time.monotonic() - cached[0] < 10:
                return cached[1]
            value = queries.facets(store.connection())
            facet_cache["facets"] = (time.monotonic(), value)
            return value

        return JSONResponse(await call(work))

    async def api_interaction(request: Request) -> Response:
        return JSONResponse(await call(detail, store, request.path_params["id"]))

    async def api_alternatives(request: Request) -> Response:
        interaction_id = request.path_params["id"]

        def work() -> dict[str, Any]:
            ids = annotations.alternatives(store, interaction_id)
            return {"items": [detail(store, i, full=False) for i in ids[:20]], "total": len(ids)}

        return JSONResponse(await call(work))

    async def api_shadow(request: Request) -> Response:
        return JSONResponse(await call(shadow_view, store, request.path_params["id"]))

    # -- API: writing ---------------------------------------------------------------

    async def api_label(request: Request) -> Response:
        interaction_id = request.path_params["id"]
        fields = label_fields(await json_body(request))
        label = await call(annotations.annotate, store, interaction_id, annotator=settings.annotator, **fields)
        return JSONResponse({"label": queries.label_dict(label), "labels": await call(labels_payload, store, [interaction_id])})

    async def api_bulk(request: Request) -> Response:
        data = await json_body(request)
        ids = data.pop("ids", None)
        string_list(ids, "ids")
        fields = label_fields(data)
        written = await call(annotations.annotate_many, store, ids, annotator=settings.annotator, **fields)
        return JSONResponse({"written": len(written), "labels": await call(labels_payload, store, ids)})

    async def api_correct(request: Request) -> Response:
        data = await json_body(request)
        response = data.get("response")
        if not isinstance(response, str):
            raise RecordError("response must be the corrected answer's text")
        label = await call(annotations.correct, store, request.path_params["id"], response, annotator=settings.annotator)
        return JSONResponse({"label": queries.label_dict(label), "labels": await call(labels_payload, store, [request.path_params["id"]])})

    async def api_undo(request: Request) -> Response:
        interaction_id = request.path_params["id"]

        def work() -> list[str]:
            before = annotations.current(store, interaction_id, annotator=settings.annotator)
            annotations.undo(store, interaction_id, annotator=settings.annotator)
            touched = [interaction_id]
            if before is not None and before.pair_id:  # undoing a pair changes the partner too
                made = annotations.get_pair(store, before.pair_id)
                touched += [made.chosen_id, made.rejected_id]
            return list(dict.fromkeys(touched))

        touched = await call(work)
        return JSONResponse({"labels": await call(labels_payload, store, touched)})

    async def api_pair(request: Request) -> Response:
        data = await json_body(request)
        chosen, rejected = data.get("chosen_id"), data.get("rejected_id")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise RecordError("a pair needs chosen_id and rejected_id")
        made = await call(
            annotations.pair, store, chosen, rejected, force=bool(data.get("force")), annotator=settings.annotator
        )
        return JSONResponse({"pair": converter.unstructure(made), "labels": await call(labels_payload, store, [chosen, rejected])})

    async def api_regenerate(request: Request) -> Response:
        data = await json_body(request)
        provider = data.get("provider") or settings.regenerate_provider
        if not provider:
            raise AnnotationRefused("name a provider as NAME:MODEL (or start the dashboard with --regenerate-with)")
        options = data.get("options") or {}
        if not isinstance(provider, str) or not isinstance(options, dict):
            raise RecordError("provider must be NAME:MODEL and options an object")
        check_regenerate(provider, options, settings.regenerate_provider)
        new = await call(annotations.regenerate, store, request.path_params["id"], provider, **options)
        return JSONResponse({"interaction": detail(store, new.id, full=False)})

    async def api_proposals(request: Request) -> Response:
        data = await json_body(request)
        decision = request.path_params["decision"]
        ids = data.get("ids")
        string_list(ids, "ids")
        status = {"accept": "accepted", "reject": "rejected"}.get(decision)
        if status is None:
            raise NotFound(f"no such decision {decision!r} (accept or reject)")
        written = await call(annotations.set_status, store, ids, status)
        return JSONResponse({"written": len(written), "labels": await call(labels_payload, store, ids)})

    async def api_export(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in EXPORT_FORMATS:
            raise NotFound(f"no export format {fmt!r} here (use {', '.join(EXPORT_FORMATS)})")
        filters = filters_of(request)
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+b")

        def write() -> int:
            from wilson_core.exporting import iter_records

            lines = 0
            for record in iter_records(store, export_options(filters, fmt, redaction.enabled)):
                spool.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
                lines += 1
            spool.seek(0)
            return lines

        lines = await call(write)

        def chunks():
            try:
                while chunk := spool.read(64 * 1024):
                    yield chunk
            finally:
                spool.close()

        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            chunks(),
            media_type="application/x-ndjson",
            headers={
                "content-disposition": f'attachment; filename="wilson-{fmt}-{stamp}.jsonl"',
                "x-wilson-records": str(lines),
            },
        )

    return [
        Route("/api/interactions", api_interactions),
        Route("/api/stats", api_stats),
        Route("/api/facets", api_facets),
        Route("/api/interactions/{id}", api_interaction),
        Route("/api/interactions/{id}/alternatives", api_alternatives),
        Route("/api/interactions/{id}/shadow", api_shadow),
        Route("/api/interactions/{id}/label", api_label, methods=["POST"]),
        Route("/api/interactions/{id}/correct", api_correct, methods=["POST"]),
        Route("/api/interactions/{id}/undo", api_undo, methods=["POST"]),
        Route("/api/interactions/{id}/regenerate", api_regenerate, methods=["POST"]),
        Route("/api/bulk", api_bulk, methods=["POST"]),
        Route("/api/pairs", api_pair, methods=["POST"]),
        Route("/api/proposals/{decision}", api_proposals, methods=["POST"]),
        Route("/api/export/{fmt}", api_export),
    ]
