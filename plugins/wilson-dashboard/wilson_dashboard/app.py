"""The dashboard web app (Starlette): the Training tab page, the run view and the JSON API.

Its parts: :mod:`.security` (token, session, CSRF and Host checks), :mod:`.inputs`
(what a browser may send), :mod:`.api` (the JSON API), :mod:`.views` (the data
behind each view), :mod:`.ab` (the A/B tab) and :mod:`.queries` (the SQL).

Security model (like Jupyter): a random access token is printed as a URL;
opening it sets an HttpOnly session cookie and redirects to the same page
without the token.  Every page and ``/api/*`` call needs that session (the
API answers 401 without it); state-changing requests also need the session's
CSRF token in the ``X-CSRF-Token`` header.  Captured text is hostile input:
templates autoescape and the page script only ever sets ``textContent``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from attrs import frozen
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from wilson_core.errors import AnnotationRefused, NotFound, WilsonError
from wilson_core.store import open_store

from . import ab, api
from .inputs import BROWSER_PROVIDERS, check_regenerate, int_param
from .security import LOOPBACK_HOSTS, Sessions, allowed_hosts, guard, wants_json
from .views import (
    EXPORT_FORMATS,
    detail,
    export_options,
    labels_payload,
    run_view,
    shadow_view,
    stats,
)

__all__ = [
    "BROWSER_PROVIDERS",
    "EXPORT_FORMATS",
    "Settings",
    "allowed_hosts",
    "check_regenerate",
    "create_app",
    "detail",
    "export_options",
    "int_param",
    "labels_payload",
    "run_view",
    "shadow_view",
    "stats",
]

HERE = Path(__file__).parent


@frozen
class Settings:
    db: str
    token: str
    annotator: str = "local"
    regenerate_provider: str | None = None
    loopback_only: bool = True
    #: the address the server is bound to: the Host check allows the names it answers to.
    bind_host: str = "127.0.0.1"


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
        data = await api.call(run_view, store, run_id)
        return templates.TemplateResponse(request, "run.html", {"csrf": request.state.csrf, **data})

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
        *api.routes(store, settings, redaction),
        *ab.routes(store, templates, settings.annotator),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = []
    if settings.loopback_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    else:  # bound to another address: the names and addresses it answers to, never any Host
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.bind_host)))
    middleware.append(Middleware(BaseHTTPMiddleware, dispatch=guard(settings.token, sessions, templates)))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={WilsonError: error_response, Exception: unexpected},
    )
    app.state.store = store
    app.state.settings = settings
    return app
