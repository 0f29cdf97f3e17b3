"""The A/B tab: blind review of two or three systems' answers to one held-out prompt.

Routes (added to the app by :func:`routes`): ``GET /ab`` (the page), ``GET /api/ab/next``
(the next item, answers in their shown order, no system names) and
``POST /api/ab/{id}/pick`` with ``{"slot": N}`` or ``{"slot": null}`` for a tie (the
systems are revealed in the answer, and the pick's preference pairs are written).
The logic is :mod:`wilson_core.pipeline.ab`; items come from ``wilson pipeline run``
(``ab-review = N`` in ``[tool.wilson.pipeline.eval]``) or ``wilson pipeline ab``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wilson_core.errors import RecordError


def routes(store: Any, templates: Any, annotator: str) -> list[Route]:
    """The A/B page and API over ``store``; picks are written as ``annotator``."""
    from wilson_core.pipeline import ab

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "ab.html", {"csrf": request.state.csrf})

    async def next_item(request: Request) -> Response:
        batch = request.query_params.get("batch") or None
        item = await run_in_threadpool(ab.next_item, store, batch)
        return JSONResponse({"item": item})

    async def pick(request: Request) -> Response:
        try:
            data = await request.json()
        except ValueError:
            raise RecordError("the request body must be a JSON object") from None
        if not isinstance(data, dict) or "slot" not in data:
            raise RecordError('send {"slot": N} to pick an answer or {"slot": null} for a tie')
        result = await run_in_threadpool(ab.pick, store, request.path_params["id"], data["slot"], annotator)
        return JSONResponse(result)

    return [
        Route("/ab", page),
        Route("/api/ab/next", next_item),
        Route("/api/ab/{id}/pick", pick, methods=["POST"]),
    ]
