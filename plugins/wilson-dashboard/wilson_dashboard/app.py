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
import re
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
from wilson_core.store import Store, open_store, search, shadow

from . import ab, queries

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
    #: the address the server is bound to: the Host check allows the names it answers to.
    bind_host: str = "127.0.0.1"


#: providers a browser may name for ``regenerate`` (besides the one given with --regenerate-with),
#: and the driver options it may set with their types: nothing that names a file, a server or a key.
BROWSER_PROVIDERS: dict[str, dict[str, tuple[type, ...]]] = {
    "scripted": {"script": (list,), "cycle": (bool,), "latency_s": (int, float)},
    "openai": {},
    "ollama": {},
}
_DIGITS = re.compile(r"[0-9]{1,18}")


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter in ``[low, high]`` (values above are capped), or a 400."""
    if value is None or value == "":
        return default
    if not _DIGITS.fullmatch(value):
        raise RecordError(f"{name} must be a whole number from {low} to {high}, got {value[:40]!r}")
    return max(low, min(int(value), high))


def allowed_hosts(bind_host: str) -> list[str]:
    """The ``Host`` header values that fit ``bind_host``: the loopback names, and for another
    address that address (for ``0.0.0.0`` / ``::``: this machine's names and addresses).

    ``$WILSON_DASHBOARD_HOSTS`` (comma-separated) adds names, e.g. behind a reverse proxy.
    """
    import os
    import socket

    names = {h.strip("[]") for h in LOOPBACK_HOSTS}
    bare = bind_host.strip("[]")
    if bare in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname(), socket.getfqdn()}
        for name in list(names):
            try:
                names.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
            except (OSError, UnicodeError):
                continue
    else:
        names.add(bare)
    names |= {h.strip() for h in os.environ.get("WILSON_DASHBOARD_HOSTS", "").split(",") if h.strip()}
    names.discard("")
    return sorted(names | {f"[{n}]" for n in names if ":" in n})


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError(f"{name} must be a list of texts")
    return value


#: the label fields a request may set, and what each must be.
_LABEL_TYPES: dict[str, tuple[type, ...]] = {
    "rating": (int,), "preference": (str,), "tags": (list,), "add_tags": (list,),
    "remove_tags": (list,), "notes": (str,), "clear": (list,),
}


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
    from wilson_core.exporting.defaults import redaction_setting

    redaction = redaction_setting(settings.db)  # the same default as `wilson export` (shown on the page)
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
            if not same_origin(request):
                return _secure(JSONResponse({"error": "cross-origin request refused"}, status_code=403))
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), csrf.encode()):
                return _secure(JSONResponse({"error": "missing or wrong CSRF token; reload the page"}, status_code=403))
        request.state.csrf = csrf
        return _secure(await call_next(request))

    def same_origin(request: Request) -> bool:
        """A state-changing request must come from this dashboard's own pages (when a browser says)."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not sent by a browser (the session cookie and CSRF token still apply)
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(origin)
            return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host", "")
        except ValueError:
            return False

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
                "redaction": redaction,
            },
        )

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        data = await call(run_view, store, run_id)
        return templates.TemplateResponse(request, "run.html", {"csrf": request.state.csrf, **data})

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

    def label_fields(data: dict[str, Any]) -> dict[str, Any]:
        allowed = {"rating", "preference", "tags", "add_tags", "remove_tags", "notes", "clear"}
        unknown = set(data) - allowed
        if unknown:
            raise RecordError(f"unknown field(s): {', '.join(sorted(unknown)[:10])}")
        fields = {k: v for k, v in data.items() if v is not None}
        for key, value in fields.items():
            if not isinstance(value, _LABEL_TYPES[key]) or isinstance(value, bool):
                raise RecordError(f"{key} has the wrong type ({type(value).__name__})")
            if isinstance(value, list):
                _string_list(value, key)
        return fields

    async def api_label(request: Request) -> Response:
        interaction_id = request.path_params["id"]
        fields = label_fields(await body(request))
        label = await call(annotations.annotate, store, interaction_id, annotator=settings.annotator, **fields)
        return JSONResponse({"label": queries.label_dict(label), "labels": await call(labels_payload, store, [interaction_id])})

    async def api_bulk(request: Request) -> Response:
        data = await body(request)
        ids = data.pop("ids", None)
        _string_list(ids, "ids")
        fields = label_fields(data)
        written = await call(annotations.annotate_many, store, ids, annotator=settings.annotator, **fields)
        return JSONResponse({"written": len(written), "labels": await call(labels_payload, store, ids)})

    async def api_correct(request: Request) -> Response:
        data = await body(request)
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
        if not isinstance(provider, str) or not isinstance(options, dict):
            raise RecordError("provider must be NAME:MODEL and options an object")
        check_regenerate(provider, options, settings.regenerate_provider)
        new = await call(annotations.regenerate, store, request.path_params["id"], provider, **options)
        return JSONResponse({"interaction": detail(store, new.id, full=False)})

    async def api_proposals(request: Request) -> Response:
        data = await body(request)
        decision = request.path_params["decision"]
        ids = data.get("ids")
        _string_list(ids, "ids")
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

    # -- errors ------------------------------------------------------------------------

    def unexpected(request: Request, exc: Exception) -> Response:
        """A bug, not bad input: logged with its traceback, answered without it."""
        import logging

        logging.getLogger("wilson.dashboard").exception("error answering %s", request.url.path)
        if wants_json(request):
            return JSONResponse({"error": "internal error (see the dashboard's log)", "kind": "InternalError"},
                                status_code=500)
        return PlainTextResponse("internal error (see the dashboard's log)", status_code=500)

    def error_response(request: Request, exc: Exception) -> Response:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, AnnotationRefused):
            status = 409
        from wilson_core.text import clean_text

        message = clean_text(str(exc))  # it may quote the request's own (hostile) text
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
        Route("/api/interactions/{id}/shadow", api_shadow),
        Route("/api/interactions/{id}/label", api_label, methods=["POST"]),
        Route("/api/interactions/{id}/correct", api_correct, methods=["POST"]),
        Route("/api/interactions/{id}/undo", api_undo, methods=["POST"]),
        Route("/api/interactions/{id}/regenerate", api_regenerate, methods=["POST"]),
        Route("/api/bulk", api_bulk, methods=["POST"]),
        Route("/api/pairs", api_pair, methods=["POST"]),
        Route("/api/proposals/{decision}", api_proposals, methods=["POST"]),
        Route("/api/export/{fmt}", api_export),
        *ab.routes(store, templates, settings.annotator),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = []
    if settings.loopback_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    else:  # bound to another address: the names and addresses it answers to, never any Host
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.bind_host)))
    middleware.append(Middleware(BaseHTTPMiddleware, dispatch=guard))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={WilsonError: error_response, Exception: unexpected},
    )
    app.state.store = store
    app.state.settings = settings
    return app


def check_regenerate(provider: str, options: dict[str, Any], configured: str | None) -> None:
    """Refuse a provider or driver option a browser must not choose (a file, a server, a key).

    :raises RecordError: what is refused and why.
    """
    name = provider.split(":", 1)[0].strip()
    if ":" not in provider or not name:
        raise RecordError(f"provider must be written NAME:MODEL, got {provider[:80]!r}")
    allowed = BROWSER_PROVIDERS.get(name)
    if allowed is None:
        if provider == configured and not options:
            return
        raise RecordError(
            f"the provider {name!r} cannot be chosen from the browser; start the dashboard with "
            f"--regenerate-with {name}:MODEL"
        )
    for key, value in options.items():
        kinds = allowed.get(key)
        if kinds is None:
            raise RecordError(f"the option {key[:40]!r} cannot be set from the browser")
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise RecordError(f"the option {key!r} has the wrong type ({type(value).__name__})")


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _denied(request: Request, templates: Jinja2Templates, message: str) -> Response:
    response = templates.TemplateResponse(request, "denied.html", {"message": message, "csrf": ""}, status_code=401)
    return _secure(response)


# --- data for the views ------------------------------------------------------------------


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
