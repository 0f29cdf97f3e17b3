"""Calls a route sends to a local model: answered locally, shadowed, or tried before the upstream.

- ``local``: the local model answers, streamed as it generates when the client
  asked for a stream, in the client's protocol (:mod:`.render`).
- ``shadow``: the upstream answers the app as usual; a sample of the calls is
  also answered by the local model in the background (never more than
  ``max_concurrency`` at once: the others are skipped, so the app never waits
  and the local model never falls behind).  Both answers are recorded with the
  same messages (one context); the local one in a run whose metadata says
  ``{"shadow_of": <the upstream answer's id>, "route": NAME}``.
- ``fallback``: the local model answers first, whole; when it fails, takes
  longer than ``timeout`` or returns output that breaks the request's JSON
  schema or tool schemas, the request goes upstream instead.  The failed local
  attempt is recorded too (``status="error"``, run metadata ``{"fallback":
  reason, "route": NAME}``).
"""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING, Any

from wilson_core.errors import ParameterError
from wilson_core.records import new_id

from .captured import INVALID_REQUEST, error_body
from .local import Job, provider_params
from .recorder import converter
from .render import RENDERERS, Renderer, chunk, streamed
from .routes import Route

if TYPE_CHECKING:
    from .captured import Captured
    from .client import ClientConnection
    from .relay import Exchange
    from .server import ProxyServer


def parse_for_local(protocol: str, endpoint: str, request: dict[str, Any],
                    max_tokens_limit: int | None = None) -> tuple[list, list | None, dict]:
    """Messages, tools and provider parameters of a request, through the protocol's converter.

    The parameters are checked first (:func:`wilson_core.protocols.params.check`): one that
    is wrong raises :class:`~wilson_core.errors.ParameterError`, the client's 400.
    """
    from wilson_core.protocols.params import check

    module = converter(protocol, endpoint)
    request = check(module.NAME, request, max_tokens_limit=max_tokens_limit)
    parsed = module.parse_request(request)
    if not parsed.messages:
        raise ParameterError("the request has no message to answer", "input" if module.NAME == "openai-responses"
                             else "messages")
    return list(parsed.messages), list(parsed.tools) or None, provider_params({**request, **parsed.params})


def schema_problem(request: dict[str, Any], renderer: Renderer) -> str | None:
    """Why the local answer breaks the request's JSON schema or tool schemas (``None``: it does not)."""
    tools = {}
    for tool in request.get("tools") or []:
        if isinstance(tool, dict):
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            schema = function.get("parameters") or function.get("input_schema")
            tools[function.get("name")] = schema
    for index, call in enumerate(renderer.calls):
        if call["name"] not in tools:
            return f"tool call {index} names an unknown tool {call['name']!r}"
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except json.JSONDecodeError as exc:
            return f"tool call {index} ({call['name']}) has arguments that are not JSON: {exc}"
        problem = _validate(arguments, tools[call["name"]])
        if problem:
            return f"tool call {index} ({call['name']}): {problem}"
    schema, wants_json = _answer_schema(request)
    if wants_json and not renderer.calls:
        try:
            answer = json.loads(renderer.text)
        except json.JSONDecodeError as exc:
            return f"the answer is not the JSON the request asks for: {exc}"
        problem = _validate(answer, schema)
        if problem:
            return f"the answer breaks the request's JSON schema: {problem}"
    return None


def _answer_schema(request: dict[str, Any]) -> tuple[Any, bool]:
    form = request.get("response_format")
    text = request.get("text") or request.get("output_config")
    if form is None and isinstance(text, dict) and isinstance(text.get("format"), dict):
        spec = text["format"]  # Responses' text.format, Anthropic's output_config.format: the schema beside the type
        form = {"type": spec.get("type"), "json_schema": {"schema": spec.get("schema")}}
    if isinstance(form, dict):
        if form.get("type") == "json_schema":
            spec = form.get("json_schema") or {}
            return spec.get("schema") if isinstance(spec, dict) else None, True
        if form.get("type") == "json_object":
            return None, True
    ollama = request.get("format")
    if ollama == "json":
        return None, True
    if isinstance(ollama, dict):
        return ollama, True
    return None, False


def _validate(value: Any, schema: Any) -> str | None:
    if not isinstance(schema, dict) or not schema:
        return None
    try:
        import jsonschema
    except ImportError:  # without jsonschema: required keys and top-level types only
        if schema.get("type") == "object":
            if not isinstance(value, dict):
                return "expected an object"
            missing = [k for k in schema.get("required", []) if k not in value]
            return f"missing required {', '.join(missing)}" if missing else None
        return None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return exc.message
    except jsonschema.SchemaError:
        return None
    return None


class LocalExchange:
    """One call a local model answers for a client (``local``, or the local try of ``fallback``)."""

    connection = None  # no upstream connection (ClientConnection's flow control looks for one)

    def __init__(
        self,
        client: ClientConnection,
        route: Route,
        renderer: Renderer,
        captured: Captured | None,
        keep_alive: bool,
        request: dict[str, Any],
        fallback: Exchange | None = None,
    ) -> None:
        self.client = client
        self.route = route
        self.renderer = renderer
        self.captured = captured
        self.keep_alive = keep_alive
        self.request = request
        self.fallback = fallback
        self.events: list[Any] = []
        self.job: Job | None = None
        self.done = False
        self.client_gone = False
        self.head_sent = False
        self.started = time.perf_counter()
        self.timer: Any = None
        self.spec = route.provider

    def start(self, messages: list, tools: list | None, params: dict) -> None:
        proxy = self.client.proxy
        assert proxy.loop is not None
        model = proxy.local_model(self.route)
        self.spec = model.spec  # what answers (a registry:live route: the live model's provider)
        self.job = model.submit(proxy.loop, messages, tools, params, self.on_event, self.on_done)
        if self.fallback is not None:
            self.timer = proxy.loop.call_later(self.route.timeout, self.on_timeout)

    def client_lost(self) -> None:
        self.client_gone = True
        if self.job is not None:
            self.job.cancel()

    def write(self, data: bytes) -> None:
        client = self.client
        if data and not client.closed and client.transport is not None:
            client.transport.write(data)

    def capture(self, data: bytes) -> None:
        captured = self.captured
        if captured is not None and data:
            captured.parts.append(data)
            captured.times.append(time.perf_counter())

    def on_event(self, event: Any) -> None:
        if self.done:
            return
        if self.fallback is not None:  # judged whole before anything is sent
            self.events.append(event)
            self.renderer.take(event)
            return
        self.send(event)

    def send(self, event: Any) -> None:
        piece = self.renderer.event(event)
        if not piece:
            return
        if not self.head_sent:
            self.head_sent = True
            self.write(self.renderer.head() + chunk(piece))
        else:
            self.write(chunk(piece))
        self.capture(piece)

    def on_timeout(self) -> None:
        self.on_done(f"the local model took longer than {self.route.timeout:g} s")

    def on_done(self, error: str | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.job is not None and error is not None:
            self.job.cancel()
        proxy = self.client.proxy
        stats = proxy.stats_for(self.route)
        elapsed = (time.perf_counter() - self.started) * 1000.0
        if self.fallback is not None:
            problem = error or schema_problem(self.request, self.renderer)
            if problem is not None and not self.client_gone:
                stats.count("fallback_to_upstream")
                self.record_attempt(problem)
                self.client.exchange = self.fallback
                proxy.send(self.fallback)
                return
            stats.count("answered_locally")
            self.replay()
        elif error is None:
            stats.count("answered_locally")
        else:
            stats.count("local_errors")
        stats.latencies.append(elapsed)
        self.finish(error)

    def replay(self) -> None:
        """A fallback's local answer passed: send it, streamed if the client asked for a stream."""
        renderer = type(self.renderer)(self.renderer.model, streamed(self.client_protocol, self.request),
                                       self.request)
        renderer.id = self.renderer.id
        self.renderer = renderer
        self.fallback = None
        for event in self.events:
            self.send(event)

    @property
    def client_protocol(self) -> str:
        return self.captured.protocol if self.captured is not None else "openai"

    def finish(self, error: str | None) -> None:
        renderer = self.renderer
        if getattr(error, "client_fault", False) and not self.head_sent and not self.client_gone:
            self.refuse(error)
            return
        status, tail = renderer.end(error if not self.client_gone else "the client disconnected")
        captured = self.captured
        if self.client_gone:
            outcome = "incomplete"
        elif error is not None:
            outcome = "error" if not renderer.output else "incomplete"
        else:
            outcome = "ok"
        if renderer.stream:
            if not self.head_sent:
                self.head_sent = True
                self.write(renderer.head() + chunk(tail) + b"0\r\n\r\n")
            else:
                self.write(chunk(tail) + b"0\r\n\r\n")
            self.capture(tail)
        else:
            self.write(renderer.whole(status, tail, self.keep_alive))
            self.capture(tail)
        if captured is not None:
            captured.status = status
            captured.content_type = (renderer.stream_type if renderer.stream else renderer.content_type).encode()
            captured.answered_by = self.spec
            captured.ended = time.perf_counter()
            captured.outcome = "ok" if outcome == "ok" or (renderer.stream and error and not self.client_gone) else outcome
            captured.error = None if outcome == "ok" else (error or "the client disconnected")
            submit = self.client.proxy.submit
            if submit is not None:
                submit(captured)
        self.client.exchange_done(self.keep_alive and not self.client_gone)

    def refuse(self, error: Any) -> None:
        """The model refused the request for what it asks, before answering: the client's 400."""
        body = error_body(self.renderer.protocol, str(error), INVALID_REQUEST, error.param)
        self.write(self.renderer.whole(400, body, self.keep_alive))
        captured = self.captured
        if captured is not None:
            self.capture(body)
            captured.status, captured.content_type = 400, b"application/json"
            captured.answered_by = self.spec
            captured.ended = time.perf_counter()
            captured.outcome, captured.error = "error", str(error)
            if self.client.proxy.submit is not None:
                self.client.proxy.submit(captured)
        self.client.exchange_done(self.keep_alive)

    def record_attempt(self, problem: str) -> None:
        """The local try of a fallback that did not pass, recorded as an error of its own."""
        proxy = self.client.proxy
        original = self.captured
        if original is None or proxy.submit is None:
            return
        attempt = shadow_captured(original, {"fallback": problem, "route": self.route.name})
        status, body = self.renderer.end(None)
        attempt.parts, attempt.times = [body], [time.perf_counter()]
        attempt.status, attempt.content_type = status, b"application/json"
        attempt.answered_by = self.spec
        attempt.ended = time.perf_counter()
        attempt.outcome, attempt.error = "error", f"fallback to upstream: {problem}"
        proxy.submit(attempt)


def shadow_captured(original: Captured, metadata: dict[str, Any]) -> Captured:
    """A second capture of the same request (same messages, so the same context), in a run of its own."""
    from .captured import Captured

    other = Captured(original.protocol, original.endpoint, original.request_body, original.upstream)
    other.run_id = new_id()
    other.call_type = original.call_type
    other.metadata = json.dumps(metadata).encode()
    return other


def start_shadow(proxy: ProxyServer, route: Route, original: Captured) -> bool:
    """Answer a copy of the call with the local model in the background; ``False`` when skipped.

    Only the sampling and the concurrency cap are decided here, on the request path; the
    copy's body is parsed on the local model's thread.
    """
    stats = proxy.stats_for(route)
    if route.sample < 1.0 and random.random() >= route.sample:
        stats.count("shadow_not_sampled")
        return False
    if proxy.shadow_inflight.get(route.name, 0) >= route.max_concurrency:
        stats.count("shadow_skipped_busy")
        return False
    captured = shadow_captured(original, {"shadow_of": original.id, "route": route.name})
    renderer_class = RENDERERS[(original.protocol, original.endpoint)]
    box: dict[str, Renderer] = {}

    def prepare() -> tuple[list, list | None, dict]:
        request = json.loads(original.request_body)
        box["renderer"] = renderer_class(str(request.get("model") or route.provider), False, request)
        return parse_for_local(original.protocol, original.endpoint, request)

    def on_event(event: Any) -> None:
        box["renderer"].take(event)

    model = proxy.local_model(route)  # chosen now: a new live model only answers later calls
    proxy.shadow_inflight[route.name] = proxy.shadow_inflight.get(route.name, 0) + 1
    started = time.perf_counter()

    def on_done(error: str | None) -> None:
        proxy.shadow_inflight[route.name] -= 1
        stats.count("shadow_answered" if error is None else "shadow_errors")
        stats.shadow_latencies.append((time.perf_counter() - started) * 1000.0)
        renderer = box.get("renderer") or renderer_class(route.provider, False, {})
        status, body = renderer.end(error)
        captured.parts, captured.times = [body], [time.perf_counter()]
        captured.status, captured.content_type = status, b"application/json"
        captured.answered_by = model.spec
        captured.ended = time.perf_counter()
        captured.outcome, captured.error = ("ok", None) if error is None else ("error", error)
        if proxy.submit is not None:
            proxy.submit(captured)

    assert proxy.loop is not None
    model.submit(proxy.loop, [], None, {}, on_event, on_done, prepare=prepare)
    stats.count("shadowed")
    return True
