"""``llamacpp``: run a GGUF in-process-tree with llama.cpp (node-llama-cpp), through the facade.

    LLM("llamacpp:/models/tiny-q8_0.gguf")
    LLM("llamacpp:/models/base-f16.gguf?lora=/models/base-lora-f16.gguf")
    LLM("llamacpp:/models/tiny-f32.gguf", lora="/models/adapter.gguf", threads=2)

The conversation is rendered with the chat template stored in the GGUF
(``tokenizer.chat_template``, the one used in training), tools included; tool calls
the model writes as ``<tool_call>{json}</tool_call>`` come back as ``ToolCall``s.
Request parameters: ``max_tokens`` (default 256), ``temperature`` (default 0:
greedy), ``top_p``, ``seed``; structured outputs (``guided_choice``,
``response_format`` json_schema / json_object, a forced ``tool_choice``: see
:mod:`wilson_core.constraints`) are enforced by a llama.cpp grammar.  ``stream()``
yields the reply token by token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wilson_core.constraints import (
    CHOICE,
    TOOL,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ConstraintError,
    from_params,
    gbnf_choice,
    keywords,
)
from wilson_core.errors import ParameterError, ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import parse_tagged_tool_calls
from wilson_core.records import ProviderResponse
from wilson_core.stops import StopText, stop_sequences
from wilson_core.streams import StreamEvent

from .runner import RunnerError


def parse_model_spec(model: str) -> tuple[Path, list[Path]]:
    """``PATH.gguf[?lora=A.gguf[,B.gguf]]`` -> (model file, adapter files)."""
    path, _, query = model.partition("?lora=")
    adapters = [Path(p) for p in query.split(",") if p] if query else []
    return Path(path), adapters


def read_gguf_chat_metadata(path: Path) -> dict[str, Any]:
    """Chat template and special token texts stored in a GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = reader.fields

    def value(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    tokens = value("tokenizer.ggml.tokens") or []

    def token_text(key: str) -> str | None:
        index = value(key)
        return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

    return {
        "chat_template": value("tokenizer.chat_template"),
        "bos_token": token_text("tokenizer.ggml.bos_token_id"),
        "eos_token": token_text("tokenizer.ggml.eos_token_id"),
        "add_bos_token": bool(value("tokenizer.ggml.add_bos_token")),
    }


def render_chat(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                bos_token: str | None = None, eos_token: str | None = None,
                add_generation_prompt: bool = True) -> str:
    """Render a Hugging Face chat template the way transformers does (sandboxed Jinja2)."""
    import json
    from datetime import datetime

    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template).render(
        messages=messages, tools=tools or None, add_generation_prompt=add_generation_prompt,
        bos_token=bos_token or "", eos_token=eos_token or "",
    )


#: JSON-schema keywords node-llama-cpp's grammar builder does not enforce (it would let values
#: through that break them): such a schema is refused rather than half enforced.
LLAMACPP_UNSUPPORTED = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                                  "pattern", "patternProperties", "anyOf", "allOf", "not", "if", "then", "else",
                                  "dependentRequired", "dependentSchemas", "uniqueItems", "contains"})


class LlamaCppProvider(Provider):
    """A GGUF model served by a llama.cpp child process (started on first use)."""

    def __init__(self, model: str, *, lora: str | list[str] | None = None, context: int = 2048,
                 threads: int = 1, **options: Any) -> None:
        super().__init__(model, **options)
        self.path, adapters = parse_model_spec(model)
        if isinstance(lora, str):
            adapters.append(Path(lora))
        elif lora:
            adapters.extend(Path(p) for p in lora)
        if not self.path.is_file():
            raise ProviderError(f"llamacpp: GGUF file {self.path} does not exist")
        for adapter in adapters:
            if not adapter.is_file():
                raise ProviderError(f"llamacpp: LoRA adapter GGUF {adapter} does not exist")
        self.adapters = adapters
        self.context = context
        self.threads = threads
        self.metadata = read_gguf_chat_metadata(self.path)
        if not self.metadata["chat_template"]:
            raise ProviderError(f"llamacpp: {self.path} has no chat template (tokenizer.chat_template)")
        self._runner: Any = None
        self._lock = threading.Lock()

    def _get_runner(self) -> Any:
        with self._lock:
            if self._runner is None:
                from .runner import LlamaCppRunner

                try:
                    self._runner = LlamaCppRunner(self.path, lora=self.adapters,
                                                  context=self.context, threads=self.threads)
                except Exception as exc:
                    raise ProviderError(f"llamacpp: {exc}") from exc
            return self._runner

    def prompt_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        meta = self.metadata
        text = render_chat(meta["chat_template"], messages, tools, meta["bos_token"], meta["eos_token"])
        runner = self._get_runner()
        tokens = runner.tokenize(text)
        bos = runner.info.get("bos")
        if meta["add_bos_token"] and bos is not None and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 params: Mapping[str, Any]) -> tuple[list[int], dict[str, Any]]:
        """The prompt tokens and the runner's ``generate`` arguments for one request."""
        try:
            constraint = from_params(params, tools)
        except ConstraintError as exc:
            raise ProviderError(f"llamacpp: {exc}") from exc
        tokens = self.prompt_tokens(messages, tools)
        max_tokens = int(params.get("max_tokens") or 256)
        if len(tokens) + max_tokens > self.context:
            raise ParameterError(
                f"llamacpp: prompt ({len(tokens)} tokens) + max_tokens ({max_tokens}) exceed the "
                f"context of {self.context}; pass context=... to LLM()"
            )
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": float(params.get("temperature") or 0.0),
                                   "seed": params.get("seed"), "top_p": params.get("top_p")}
        if constraint is not None:
            if constraint.kind == CHOICE:
                options["grammar"] = gbnf_choice(constraint.choices)
            else:
                unsupported = sorted(keywords(constraint.schema) & LLAMACPP_UNSUPPORTED)
                if unsupported:
                    raise ParameterError(
                        f"llamacpp: the JSON schema uses {', '.join(unsupported)}, which llama.cpp's grammar "
                        "(node-llama-cpp) cannot enforce; the transformers: and onnx: providers can"
                    )
                options["json_schema"] = dict(constraint.schema or {})
                if constraint.kind == TOOL:
                    options["wrap"] = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE)
        return tokens, options

    def _response(self, tokens: list[int], result: dict[str, Any], stop: Any = None) -> ProviderResponse:
        content, calls = parse_tagged_tool_calls(StopText(stop_sequences(stop)).cut(result["text"], final=True)[0])
        return ProviderResponse(
            content=content if content or not calls else None,
            tool_calls=tuple(calls),
            input_tokens=len(tokens),
            output_tokens=len(result["tokens"]),
            model=self.path.name,
            raw={"stopped": result["stopped"]},
        )

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
             params: Mapping[str, Any]) -> ProviderResponse:
        tokens, options = self._request(messages, tools, params)
        try:
            result = self._get_runner().generate(tokens, **options)
        except RunnerError as exc:
            raise ProviderError(f"llamacpp: {exc}") from exc
        return self._response(tokens, result, params.get("stop"))

    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               params: Mapping[str, Any]) -> Iterator[StreamEvent]:
        """The reply token by token (tool calls come whole, once the model has written them)."""
        from wilson_core.streams import StreamInfo
        from wilson_core.tagged_stream import TaggedTextStream

        stopper = StopText(stop_sequences(params.get("stop")))  # a bad value fails before generating
        tokens, options = self._request(messages, tools, params)
        text = TaggedTextStream()
        lines = self._get_runner().iter_generate(tokens, **options)
        generated, shown, produced = "", "", 0
        try:
            for line in lines:
                if line.get("partial"):
                    produced += 1
                    generated += str(line.get("text") or "")
                    now, stopped = stopper.cut(generated)
                    yield from text.feed(now[len(shown):])
                    shown = now
                    if stopped:  # closing `lines` reads the rest of the runner's answer
                        yield from text.end()
                        yield StreamInfo(input_tokens=len(tokens), output_tokens=produced, model=self.path.name,
                                         finish_reason="stop")
                        return
                    continue
                yield from text.feed(stopper.cut(line["text"], final=True)[0][len(shown):])  # anything held back
                yield from text.end()
                yield StreamInfo(input_tokens=len(tokens), output_tokens=len(line["tokens"]),
                                 model=self.path.name, finish_reason="stop" if line["stopped"] == "eog" else "length")
        except RunnerError as exc:
            raise ProviderError(f"llamacpp: {exc}") from exc
        finally:
            lines.close()

    def close(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
                self._runner = None
