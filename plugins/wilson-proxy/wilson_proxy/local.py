"""Local models behind the proxy: a Wilson provider driver answering one request at a time.

Each provider spec (``llamacpp:model.gguf``, ``transformers:./out/merged``,
``onnx:./out/onnx``, ``ollama:qwen2.5``, ``scripted:...``) is loaded once, on
its own worker thread, the first time a request needs it.  Requests for one
model are queued and answered in turn (a local runtime answering two prompts
at once on the same weights would only slow both), so they never corrupt
each other.  The worker hands each streamed event to the event loop, which
writes it to the client at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: request parameters passed on to providers, by the names the protocols use
PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "stop": "stop",
    "stop_sequences": "stop",
    "seed": "seed",
}


def provider_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The generation parameters a local provider honours, from any protocol's request.

    A ``stop`` that is neither a string nor a list of strings raises
    :class:`~wilson_core.errors.ProviderError` (the client's 400).
    """
    from wilson_core.stops import stop_sequences

    out: dict[str, Any] = {}
    options = params.get("options")
    merged = {**(options if isinstance(options, Mapping) else {}), **params}
    for name, target in PARAMS.items():
        value = merged.get(name)
        if value is not None and target not in out:
            out[target] = list(stop_sequences(value)) if target == "stop" else value
    out.update(structured_params(merged))
    return out


def structured_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """A request's structured-output ask, in the OpenAI shape the local providers enforce
    (``guided_choice``, ``response_format``, ``tool_choice``: see :mod:`wilson_core.constraints`).

    OpenAI chat passes through; the Responses API's ``text.format``, Ollama's ``format``
    and Anthropic's ``tool_choice`` are translated.  A shape that is wrong is passed on
    as it is, so that the provider refuses it with its own message.
    """
    out: dict[str, Any] = {}
    if request.get("guided_choice") is not None:
        out["guided_choice"] = request["guided_choice"]
    response_format = request.get("response_format")
    text = request.get("text")
    form = request.get("format")
    output = request.get("output_config")
    if isinstance(output, Mapping) and isinstance(output.get("format"), Mapping):
        text = output  # Anthropic: output_config.format = {"type": "json_schema", "schema": {...}}
    if response_format is not None:
        out["response_format"] = response_format
    elif isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
        spec = text["format"]  # Responses API: {"type": "json_schema", "name": ..., "schema": {...}}
        if spec.get("type") == "json_schema":
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": spec.get("name", "answer"), "schema": spec.get("schema")}}
        elif spec.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    elif isinstance(form, Mapping):  # Ollama: format = a JSON schema
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": dict(form)}}
    elif form == "json":
        out["response_format"] = {"type": "json_object"}
    choice = request.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "function" and "function" not in choice:
        choice = {"type": "function", "function": {"name": choice.get("name")}}  # Responses API: flat
    if isinstance(choice, Mapping) and choice.get("type") in ("tool", "any", "auto", "none"):
        kind = choice["type"]  # Anthropic's shape
        choice = ({"type": "function", "function": {"name": choice.get("name")}} if kind == "tool"
                  else "required" if kind == "any" else kind)
    if choice is not None:
        out["tool_choice"] = choice
    return out


class Failure(str):
    """Why a local answer failed (the text); ``client_fault`` when the request was refused for
    what it asks (a :class:`~wilson_core.errors.ParameterError`: the client's 400), ``param``
    the request field it names."""

    client_fault = False
    param: str | None = None


def failure(exc: BaseException) -> Failure:
    """The :class:`Failure` for an exception a provider raised."""
    from wilson_core.errors import parameter_error

    refused = parameter_error(exc)
    if refused is None:
        return Failure(f"{type(exc).__name__}: {exc}")
    text = Failure(str(exc))
    text.client_fault, text.param = True, refused.param
    return text


class Job:
    """One request for a local model; ``cancel`` stops its generation between two tokens."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class LocalModel:
    """A provider driver loaded once and called from one worker thread."""

    def __init__(self, spec: str, options: Mapping[str, Any] | None = None) -> None:
        from wilson_core.facade import parse_provider

        self.spec = spec
        self.name, self.model = parse_provider(spec)
        self.options = dict(options or {})
        self.provider: Any = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wilson-local-{self.name}")
        self.waiting = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Fail now, with the driver loader's message, when the provider name is unknown."""
        from wilson_core import plugins
        from wilson_core.interfaces import PROVIDERS

        plugins.load_driver(PROVIDERS, self.name)

    def _load(self) -> Any:
        if self.provider is None:
            from wilson_core import plugins
            from wilson_core.interfaces import PROVIDERS

            driver = plugins.load_driver(PROVIDERS, self.name)
            self.provider = driver(self.model, **self.options)
        return self.provider

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
        on_event: Callable[[Any], None],
        on_done: Callable[[str | None], None],
        prepare: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]]
        | None = None,
    ) -> Job:
        """Queue one request; ``on_event`` / ``on_done(error)`` are called on ``loop``.

        ``prepare``, when given, runs first on the worker and returns the messages, tools
        and parameters (work kept off the event loop).
        """
        job = Job()
        with self._lock:
            self.waiting += 1

        def work() -> None:
            with self._lock:
                self.waiting -= 1
            error = None
            try:
                if job.cancelled:
                    error = "cancelled before it started"
                    return
                if prepare is not None:
                    request = prepare()
                else:
                    request = (messages, tools, params)
                events = self._load().stream(*request)
                try:
                    for event in events:
                        if job.cancelled:
                            error = "cancelled"
                            break
                        loop.call_soon_threadsafe(on_event, event)
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()
            except Exception as exc:  # the local model failed: the route decides what the client sees
                error = failure(exc)
            finally:
                try:
                    loop.call_soon_threadsafe(on_done, error)
                except RuntimeError:
                    pass  # the loop is closed: the proxy is shutting down

        self.executor.submit(work)
        return job

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._close_provider()

    def retire(self) -> None:
        """Take no more requests: those already queued are answered, then the model is closed
        (a route change or a new live model never drops a call in flight)."""
        try:
            self.executor.submit(self._close_provider)
        except RuntimeError:
            return  # already closed
        self.executor.shutdown(wait=False)

    def _close_provider(self) -> None:
        if self.provider is not None:
            try:
                self.provider.close()
            except Exception:
                pass
