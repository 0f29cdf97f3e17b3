"""Who may use the dashboard: the access token, sessions, CSRF, same-origin and Host checks.

Security model (like Jupyter): a random access token is printed as a URL;
opening it sets an HttpOnly session cookie and redirects to the same page
without the token.  Every page and ``/api/*`` call needs that session (the
API answers 401 without it); state-changing requests also need the session's
CSRF token in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

COOKIE = "wilson_dashboard_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
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


def wants_json(request: Request) -> bool:
    """An API call (answered in JSON), not a page."""
    return request.url.path.startswith("/api/")


def guard(
    access_token: str, sessions: Sessions, templates: Jinja2Templates
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware that signs a browser in with ``access_token`` and checks every other request."""

    async def guard_request(request: Request, call_next: Callable) -> Response:
        path = request.url.path
        if path.startswith("/static/"):
            return secure(await call_next(request))
        token = request.query_params.get("token")
        if token is not None:
            if not secrets.compare_digest(token.encode(), access_token.encode()):
                return denied(request, templates, "That access token is not valid.")
            session, _ = sessions.new()
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(path + ("?" + query if query else ""), status_code=303)
            response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
            return secure(response)
        csrf = sessions.csrf(request.cookies.get(COOKIE))
        if csrf is None:
            if wants_json(request):
                return secure(JSONResponse({"error": "not signed in: open the URL printed by `wilson dashboard`"}, status_code=401))
            return denied(request, templates, "Open the link that `wilson dashboard` printed (it carries the access token).")
        if request.method not in SAFE_METHODS:
            if not same_origin(request):
                return secure(JSONResponse({"error": "cross-origin request refused"}, status_code=403))
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), csrf.encode()):
                return secure(JSONResponse({"error": "missing or wrong CSRF token; reload the page"}, status_code=403))
        request.state.csrf = csrf
        return secure(await call_next(request))

    return guard_request


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


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def denied(request: Request, templates: Jinja2Templates, message: str) -> Response:
    response = templates.TemplateResponse(request, "denied.html", {"message": message, "csrf": ""}, status_code=401)
    return secure(response)
