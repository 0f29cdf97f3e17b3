"""``onnx``: a ``wilson deploy transformersjs`` folder run in-process by onnxruntime.

    LLM("onnx:deploy/web")                      # fp32 model.onnx
    LLM("onnx:deploy/web", dtype="q8")          # int8 model_quantized.onnx
    LLM("onnx:deploy/web", threads=2)

The conversation is rendered with the folder's chat template (tools included),
the reply generated greedily with the KV cache (``temperature`` > 0 samples;
``max_tokens``, default 256, caps it), and ``<tool_call>{...}</tool_call>``
blocks in the reply become :class:`~wilson_core.records.ToolCall`\\ s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wilson_core.constraints import ConstraintError, from_params, token_matcher
from wilson_core.errors import ParameterError, ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import parse_tagged_tool_calls
from wilson_core.records import ProviderResponse
from wilson_core.stops import StopText, stop_sequences
from wilson_core.streams import StreamEvent

DEFAULT_MAX_TOKENS = 256
_KNOWN_PARAMS = {"max_tokens", "max_new_tokens", "temperature", "seed", "response_format", "guided_choice",
                 "tool_choice", "stop", "top_p"}


def _eos_ids(folder: Path, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    path = folder / "generation_config.json"
    if path.exists():
        value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


class OnnxProvider(Provider):
    """Runs an exported folder with onnxruntime; loads it on the first call."""

    def __init__(self, model: str, *, dtype: str = "fp32", threads: int | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.folder = Path(model).expanduser()
        self.dtype = dtype
        self.threads = threads
        if not (self.folder / "config.json").exists():
            raise ProviderError(
                f"onnx:{model}: no config.json there; give a folder written by "
                "'wilson deploy transformersjs'"
            )
        from .runtime import model_file

        model_file(self.folder, dtype)  # fail now, not at the first call
        self._lm: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._lm is None:
                from transformers import PreTrainedTokenizerFast

                from .runtime import OnnxCausalLM

                self._tokenizer = PreTrainedTokenizerFast.from_pretrained(self.folder)
                self._lm = OnnxCausalLM(self.folder, dtype=self.dtype, threads=self.threads)
                self._eos = _eos_ids(self.folder, self._tokenizer)
        return self._lm, self._tokenizer

    def _prepare(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 params: Mapping[str, Any]) -> tuple[list[int], dict[str, Any]]:
        """The prompt ids and the generation arguments of one request."""
        unknown = set(params) - _KNOWN_PARAMS
        if unknown:
            raise ParameterError(
                f"onnx provider: unsupported parameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_KNOWN_PARAMS))}"
            )
        try:
            constraint = from_params(params, tools)
        except ConstraintError as exc:
            raise ProviderError(f"onnx: {exc}") from exc
        lm, tokenizer = self._load()
        try:
            text = tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # the template's own error message
            raise ParameterError(f"onnx:{self.model}: the chat template rejects this conversation: {exc}") from exc
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = int(params.get("max_tokens") or params.get("max_new_tokens") or DEFAULT_MAX_TOKENS)
        matcher = None
        if constraint is not None:
            matcher = token_matcher(constraint, tokenizer, lm.vocab_size, sorted(self._eos))
        options = {"max_new_tokens": limit, "eos_ids": self._eos, "temperature": float(params.get("temperature") or 0.0),
                   "seed": params.get("seed"), "matcher": matcher, "top_p": params.get("top_p")}
        stop_sequences(params.get("stop"))  # a bad value fails before generating
        return prompt_ids, options

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> ProviderResponse:
        prompt_ids, options = self._prepare(messages, tools, params)
        lm, tokenizer = self._load()
        new_ids = lm.generate(prompt_ids, **options)
        reply = tokenizer.decode(new_ids, skip_special_tokens=True)
        reply = StopText(stop_sequences(params.get("stop"))).cut(reply, final=True)[0]
        content, calls = parse_tagged_tool_calls(reply)
        return ProviderResponse(
            content=content if content or not calls else None,
            tool_calls=tuple(calls),
            input_tokens=len(prompt_ids),
            output_tokens=len(new_ids),
            model=f"{self.folder.name} ({self.dtype})",
        )

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> Iterator[StreamEvent]:
        """The reply token by token (tool calls come whole, once the model has written them)."""
        from wilson_core.streams import StreamInfo
        from wilson_core.tagged_stream import TaggedTextStream

        prompt_ids, options = self._prepare(messages, tools, params)
        lm, tokenizer = self._load()
        text = TaggedTextStream()
        stopper = StopText(stop_sequences(params.get("stop")))
        new_ids: list[int] = []
        decoded = ""
        stopped = False
        with self._lock:
            for token in lm.iter_generate(prompt_ids, **options):
                new_ids.append(token)
                now = tokenizer.decode(new_ids, skip_special_tokens=True)
                if now.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for the next token
                    continue
                now, stopped = stopper.cut(now)
                yield from text.feed(now[len(decoded):])
                decoded = now
                if stopped:
                    break
        if not stopped:
            yield from text.feed(stopper.cut(tokenizer.decode(new_ids, skip_special_tokens=True), final=True)[0]
                                 [len(decoded):])
        yield from text.end()
        finish = "stop" if stopped or (new_ids and new_ids[-1] in self._eos) else "length"
        yield StreamInfo(input_tokens=len(prompt_ids), output_tokens=len(new_ids),
                         model=f"{self.folder.name} ({self.dtype})", finish_reason=finish)
