"""The dashboard web app (Starlette): the Training tab page, the run view and the JSON API.

Security model (like Jupyter): a random access token is printed as a URL;
opening it sets an HttpOnly session cookie and redirects to the same page
without the token.  Every page and ``/api/*`` call needs that session (the
API answers 401 without it); state-changing requests also need the session's
CSRF token in the ``X-CSRF-Token`` header.  Captured text is hostile input:
templates autoescape and the page script only ever sets ``textContent``.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from attrs import frozen
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from wilson_core import annotations, converter
from wilson_core.errors import AnnotationRefused, NotFound, RecordError, WilsonError
from wilson_core.store import Store, open_store, search

from . import queries

HERE = Path(__file__).parent
COOKIE = "wilson_dashboard_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
EXPORT_FORMATS = ("sft", "dpo", "kto")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@frozen
class Settings:
    db: str
    token: str
    annotator: str = "local"
    regenerate_provider: str | None = None
    loopback_only: bool = True


class Sessions:
    """Session id -> CSRF token, in memory (a restart asks for the token URL again)."""

    def __init__(self) -> None:
        self._csrf: dict[str, str] = {}

    def new(self) -> tuple[str, str]:
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._csrf[session] = csrf
        return session, csrf

    def csrf(self, session: str | None) -> str | None:
        return self._csrf.get(session) if session else None


def create_app(settings: Settings) -> Starlette:
    """The ASGI app for ``settings.db``; every request needs the token or the session cookie."""
    store = open_store(settings.db, create=False)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True, undefined=jinja2.StrictUndefined
    )
    templates = Jinja2Templates(env=environment)
    templates.env.filters["pretty"] = lambda value: (
        value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    )
    sessions = Sessions()
    facet_cache: dict[str, Any] = {}

    # -- plumbing --------------------------------------------------------------

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def guard(request: Request, call_next: Callable) -> Response:
        path = request.url.path
        if path.startswith("/static/"):
            return _secure(await call_next(request))
        token = request.query_params.get("token")
        if token is not None:
            if not secrets.compare_digest(token.encode(), settings.token.encode()):
                return _denied(request, templates, "That access token is not valid.")
            session, _ = sessions.new()
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(path + ("?" + query if query else ""), status_code=303)
            response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
            return _secure(response)
        csrf = sessions.csrf(request.cookies.get(COOKIE))
        if csrf is None:
            if wants_json(request):
                return _secure(JSONResponse({"error": "not signed in: open the URL printed by `wilson dashboard`"}, status_code=401))
            return _denied(request, templates, "Open the link that `wilson dashboard` printed (it carries the access token).")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), csrf.encode()):
                return _secure(JSONResponse({"error": "missing or wrong CSRF token; reload the page"}, status_code=403))
        request.state.csrf = csrf
        return _secure(await call_next(request))

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise RecordError("the request body must be a JSON object") from None
        if not isinstance(data, dict):
            raise RecordError("the request body must be a JSON object")
        return data

    def filters_of(request: Request) -> queries.Filters:
        return queries.Filters.from_query(request.query_params)

    def with_search(filters: queries.Filters) -> None:
        if queries.needs_search_sync(filters):
            search.sync(store)

    # -- pages -------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "csrf": request.state.csrf,
                "db": str(store.path),
                "annotator": settings.annotator,
                "regenerate_provider": settings.regenerate_provider or "",
                "formats": EXPORT_FORMATS,
            },
        )

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        data = await call(run_view, store, run_id)
        return templates.TemplateResponse(request, "run.html", {"csrf": request.state.csrf, **data})

    # -- API: reading --------------------------------------------------------------

    async def api_interactions(request: Request) -> Response:
        filters = filters_of(request)
        limit = request.query_params.get("limit") or queries.PAGE_SIZE
        if not str(limit).isdigit():
            raise queries.BadFilter(f"limit must be a number, got {limit!r}")

        def work() -> dict[str, Any]:
            with_search(filters)
            started = time.perf_counter()
            result = queries.page(store.connection(), filters, cursor=request.query_params.get("cursor"), limit=int(limit))
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

    # -- API: writing ---------------------------------------------------------------

    def label_fields(data: dict[str, Any]) -> dict[str, Any]:
        allowed = {"rating", "preference", "tags", "add_tags", "remove_tags", "notes", "clear"}
        unknown = set(data) - allowed
        if unknown:
            raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return {k: v for k, v in data.items() if v is not None}

    async def api_label(request: Request) -> Response:
        interaction_id = request.path_params["id"]
        fields = label_fields(await body(request))
        label = await call(annotations.annotate, store, interaction_id, annotator=settings.annotator, **fields)
        return JSONResponse({"label": queries.label_dict(label), "labels": await call(labels_payload, store, [interaction_id])})

    async def api_bulk(request: Request) -> Response:
        data = await body(request)
        ids = data.pop("ids", None)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise RecordError("ids must be a list of interaction ids")
        fields = label_fields(data)
        written = await call(annotations.annotate_many, store, ids, annotator=settings.annotator, **fields)
        return JSONResponse({"written": len(written), "labels": await call(labels_payload, store, ids)})

    async def api_correct(request: Request) -> Response:
        data = await body(request)
        response = data.get("response")
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
        data = await body(request)
        chosen, rejected = data.get("chosen_id"), data.get("rejected_id")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise RecordError("a pair needs chosen_id and rejected_id")
        made = await call(
            annotations.pair, store, chosen, rejected, force=bool(data.get("force")), annotator=settings.annotator
        )
        return JSONResponse({"pair": converter.unstructure(made), "labels": await call(labels_payload, store, [chosen, rejected])})

    async def api_regenerate(request: Request) -> Response:
        data = await body(request)
        provider = data.get("provider") or settings.regenerate_provider
        if not provider:
            raise AnnotationRefused("name a provider as NAME:MODEL (or start the dashboard with --regenerate-with)")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise RecordError("options must be an object")
        new = await call(annotations.regenerate, store, request.path_params["id"], provider, **options)
        return JSONResponse({"interaction": detail(store, new.id, full=False)})

    async def api_proposals(request: Request) -> Response:
        data = await body(request)
        decision = request.path_params["decision"]
        ids = data.get("ids")
        if not isinstance(ids, list):
            raise RecordError("ids must be a list of interaction ids")
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
            for record in iter_records(store, export_options(filters, fmt)):
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

    # -- errors ------------------------------------------------------------------------

    def error_response(request: Request, exc: Exception) -> Response:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, AnnotationRefused):
            status = 409
        message = str(exc)
        if wants_json(request):
            return JSONResponse({"error": message, "kind": type(exc).__name__}, status_code=status)
        return PlainTextResponse(message, status_code=status)

    routes = [
        Route("/", index),
        Route("/runs/{run_id}", run_page),
        Route("/api/interactions", api_interactions),
        Route("/api/stats", api_stats),
        Route("/api/facets", api_facets),
        Route("/api/interactions/{id}", api_interaction),
        Route("/api/interactions/{id}/alternatives", api_alternatives),
        Route("/api/interactions/{id}/label", api_label, methods=["POST"]),
        Route("/api/interactions/{id}/correct", api_correct, methods=["POST"]),
        Route("/api/interactions/{id}/undo", api_undo, methods=["POST"]),
        Route("/api/interactions/{id}/regenerate", api_regenerate, methods=["POST"]),
        Route("/api/bulk", api_bulk, methods=["POST"]),
        Route("/api/pairs", api_pair, methods=["POST"]),
        Route("/api/proposals/{decision}", api_proposals, methods=["POST"]),
        Route("/api/export/{fmt}", api_export),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = []
    if settings.loopback_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    middleware.append(Middleware(BaseHTTPMiddleware, dispatch=guard))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={WilsonError: error_response},
    )
    app.state.store = store
    app.state.settings = settings
    return app


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _denied(request: Request, templates: Jinja2Templates, message: str) -> Response:
    response = templates.TemplateResponse(request, "denied.html", {"message": message, "csrf": ""}, status_code=401)
    return _secure(response)


# --- data for the views ------------------------------------------------------------------


def export_options(filters: queries.Filters, fmt: str) -> Any:
    """The export the stat cards count and the buttons download (SFT keeps answers rated 4+)."""
    if fmt == "sft" and filters.min_rating is None:
        filters = _with_min_rating(filters, 4)
    return filters.export_options(fmt)


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
    run_row = store.connection().execute(
        "SELECT deleted_at FROM runs WHERE id = ?", (interaction.run_id,)
    ).fetchone()
    data["run_deleted"] = bool(run_row and run_row["deleted_at"])
    if full:
        data["history"] = [
            {**queries.label_dict(v.annotation), "undone_at": v.undone_at}
            for v in annotations.history(store, interaction_id)
        ]
        data["pairs"] = converter.unstructure(annotations.pairs_of(store, interaction_id))
        data["alternatives"] = len(annotations.alternatives(store, interaction_id))
    return data


def run_view(store: Store, run_id: str) -> dict[str, Any]:
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
