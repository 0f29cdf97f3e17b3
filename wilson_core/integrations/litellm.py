"""Capture every LiteLLM call with a callback: successes, failures and streams.

    import litellm
    from wilson_core.integrations.litellm import WilsonCallback

    litellm.callbacks = [WilsonCallback()]            # or WilsonCallback(db="traffic.db")
    with wilson_core.run(call_type="agent"):
        litellm.completion(model="openai/gpt-4o-mini", messages=..., tools=...)

LiteLLM hands its callbacks the request in the OpenAI shape whatever the
provider, and the answer as an OpenAI chat completion (for a stream, the
whole answer assembled once the stream ends).  The call is taken into the
current ``wilson_core.run()`` when LiteLLM is about to send it (in the app's
own thread or task), and recorded when LiteLLM reports its end; the provider
stored is LiteLLM's (``openai``, ``anthropic``, ``ollama``...).  Tool results
are recorded from the ``role: "tool"`` messages of later requests.

LiteLLM reports nothing for a stream the app stops reading: such a call is
not recorded (the SDK wrappers and the proxy do record it, as incomplete).
For streams, LiteLLM computes the usage itself when the provider sent none.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from wilson_core import capture
from wilson_core.protocols import openai_chat
from wilson_core.records import STATUS_ERROR

__all__ = ["WilsonCallback"]

#: calls announced but not reported yet that are remembered (oldest dropped first).
PENDING = 10_000
#: LiteLLM request keys that are not the call's parameters.
_NOT_PARAMS = {"tools", "functions", "stream", "stream_options", "extra_body", "messages", "model"}


def _ms(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds() * 1000.0)
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return max(0.0, (end - start) * 1000.0)
    return None


def _dump(response: Any) -> Any:
    if response is None:
        return None
    if hasattr(response, "model_dump"):
        return response.model_dump()
    return response


class WilsonCallback(CustomLogger):
    """A LiteLLM callback that records each call in Wilson's store.

    :param db: the database (default ``$WILSON_DB`` / ``~/.wilson/data.db``, or the current run's).
    :param call_type: the call type of calls outside a run.
    """

    def __init__(self, db: str | os.PathLike[str] | None = None, call_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db = os.fspath(db) if db is not None else None
        self.call_type = call_type
        self._pending: OrderedDict[str, capture.CallCapture] = OrderedDict()
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- LiteLLM's hooks ----------------------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        try:
            call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, Mapping) else None
            if not call_id:
                return
            call = capture.start_call(call_type=self.call_type, db=self.db)
            with self._lock:
                self._pending[call_id] = call
                while len(self._pending) > PENDING:
                    self._pending.popitem(last=False)
        except Exception as exc:
            capture._internal_failure("starting a LiteLLM call", exc)

    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.log_pre_api_call(model, messages, kwargs)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs, response_obj, start_time, end_time, None)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs, None, start_time, end_time, kwargs.get("exception") if isinstance(kwargs, Mapping) else None)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)

    # -- recording ------------------------------------------------------------------------

    def _call_for(self, kwargs: Mapping[str, Any]) -> capture.CallCapture | None:
        """The call LiteLLM reports (``None`` when it was reported already: LiteLLM may
        report one call through more than one of its callback lists)."""
        call_id = kwargs.get("litellm_call_id")
        with self._lock:
            if call_id in self._reported:
                return None
            call = self._pending.pop(call_id, None) if call_id else None
            if call_id:
                self._reported[call_id] = None
                while len(self._reported) > PENDING:
                    self._reported.popitem(last=False)
        if call is None:  # LiteLLM did not announce it: the current run, as of now
            call = capture.start_call(call_type=self.call_type, db=self.db)
        return call

    def _record(self, kwargs: Any, response: Any, start: Any, end: Any, error: Any) -> None:
        try:
            if not isinstance(kwargs, Mapping):
                return
            call = self._call_for(kwargs)
            if call is None or call.done:
                return
            request = self._request(kwargs)
            stream = bool(kwargs.get("stream"))
            if stream and kwargs.get("complete_streaming_response") is not None:
                response = kwargs["complete_streaming_response"]
            parts: dict[str, Any] = {}
            if error is None and response is not None:
                result = openai_chat.parse_response(_dump(response))
                parts = dict(
                    content=result.content, tool_calls=result.tool_calls, input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens, total_tokens=result.total_tokens,
                    status=result.status, error=result.error,
                )
                model = result.model
            else:
                parts = dict(status=STATUS_ERROR, error=error if error is not None else "LiteLLM reported a failure")
                model = None
            ttft = _ms(start, kwargs.get("completion_start_time")) if stream else None
            call.finish(
                provider=str(kwargs.get("custom_llm_provider") or "litellm"),
                model=model or request.model or "unknown",
                messages=request.messages,
                tools=request.tools,
                params=request.params,
                duration_ms=_ms(start, end),
                ttft_ms=ttft,
                **parts,
            )
        except Exception as exc:
            capture._internal_failure("recording a LiteLLM call", exc)

    def _request(self, kwargs: Mapping[str, Any]) -> openai_chat.Request:
        optional = kwargs.get("optional_params") if isinstance(kwargs.get("optional_params"), Mapping) else {}
        tools = optional.get("tools") or kwargs.get("tools") or ()
        params = {k: v for k, v in optional.items() if k not in _NOT_PARAMS}
        return openai_chat.Request(
            messages=openai_chat.normalize_chat_messages(kwargs.get("messages") or []),
            tools=[dict(t) for t in tools if isinstance(t, Mapping)],
            params=params,
            model=kwargs.get("model") if isinstance(kwargs.get("model"), str) else None,
            stream=bool(kwargs.get("stream")),
        )
