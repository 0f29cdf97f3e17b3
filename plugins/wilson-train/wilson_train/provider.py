"""``transformers``: run a local Hugging Face model (base, merged, or base + LoRA adapter).

    LLM("transformers:runs/sft1/merged")                        # a merged model folder
    LLM("transformers:models/base?adapter=runs/sft1/adapter")   # base + PEFT adapter
    LLM("transformers:models/base", adapter="runs/sft1/adapter")
    LLM("transformers:runs/sft1")                               # a run folder: its merged model
    LLM("transformers:smollm2-135m")                            # any --base name works
    LLM("transformers:runs/sft1?device=cuda")                   # default: cuda when available

Conversations are rendered with the model's chat template (tools included);
decoding is greedy unless ``temperature`` > 0 is passed; ``<tool_call>{json}</tool_call>``
in the output becomes :class:`~wilson_core.records.ToolCall` s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wilson_core.constraints import Constraint, ConstraintError, TokenMatcher, from_params
from wilson_core.errors import ParameterError, ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import parse_tagged_tool_calls
from wilson_core.records import ProviderResponse
from wilson_core.stops import StopText, stop_sequences
from wilson_core.streams import StreamEvent


def split_model_spec(model: str) -> tuple[str, dict[str, str]]:
    """``"DIR?adapter=X&max_new_tokens=8"`` -> ``("DIR", {"adapter": "X", ...})``."""
    path, _, query = model.partition("?")
    return path, {k: v[-1] for k, v in parse_qs(query).items()}


def resolve_model_folder(path: str) -> tuple[str, str | None]:
    """A run folder -> its merged model (or base + adapter); an adapter folder -> its base + it."""
    folder = Path(path)
    if (folder / "merged" / "config.json").exists():
        return str(folder / "merged"), None
    if (folder / "adapter" / "adapter_config.json").exists():
        folder = folder / "adapter"
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        return adapter_base(folder), str(folder)
    return path, None


def adapter_base(adapter: Path | str) -> str:
    """The base model an adapter was trained on (``wilson_base.json``, else PEFT's record)."""
    folder = Path(adapter)
    info = folder / "wilson_base.json"
    if info.exists():
        data = json.loads(info.read_text(encoding="utf-8"))
        if data.get("gguf_file"):
            return str(Path(data["location"]) / data["gguf_file"])
        return data["name"] if not data.get("local", True) else data["location"]
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ProviderError(f"{folder}: the adapter does not say which base model it belongs to")
    return base


class LocalModel:
    """A loaded model + tokenizer (+ adapter), shared by the provider and ``wilson eval``."""

    def __init__(self, name: str, adapter: str | None = None, device: str | None = None) -> None:
        import torch  # noqa: TID251 - lazy import

        from .base import load_model, load_tokenizer, resolve_base

        base_name, found_adapter = resolve_model_folder(name)
        adapter = adapter or found_adapter
        spec = resolve_base(base_name)
        self.name = name
        self.tokenizer = load_tokenizer(spec)
        model = load_model(spec)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.eval()
        self.model = model
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ProviderError(f"{name}: the tokenizer has neither a pad nor an end-of-sequence token")
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def prompt_ids(self, messages: list[dict[str, Any]], tools: Any) -> list[int]:
        try:
            out = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=True, tokenize=True, return_dict=True
            )
        except Exception as exc:  # the template's own error (no messages, roles out of order...): the request's
            raise ParameterError(f"the chat template rejects this conversation: {exc}") from exc
        return list(out["input_ids"])

    def stop_ids(self) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return list(eos) if isinstance(eos, list) else [eos]

    def matcher(self, constraint: Constraint | None) -> TokenMatcher | None:
        """A token matcher enforcing ``constraint`` on this model's vocabulary (``None``: no constraint)."""
        if constraint is None:
            return None
        from wilson_core.constraints import token_matcher

        size = int(self.model.get_output_embeddings().weight.shape[0])
        return token_matcher(constraint, self.tokenizer, size, self.stop_ids())

    def _processors(self, matchers: Sequence[TokenMatcher | None]) -> Any:
        if not any(matchers):
            return None
        from transformers import LogitsProcessorList

        return LogitsProcessorList([constrained_processor(matchers, self.stop_ids())])

    def generate(self, messages: list[dict[str, Any]], tools: Any = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float | None = None,
                 constraint: Constraint | None = None, streamer: Any = None) -> tuple[str, int, int]:
        """Greedy (or sampled) continuation: text, prompt tokens, generated tokens.

        ``constraint``: the reply obeys it (tokens it rules out are never picked);
        ``streamer``: a transformers streamer that receives the new tokens as they come.
        """
        import torch  # noqa: TID251 - lazy import

        ids = self.prompt_ids(messages, tools)
        inputs = torch.tensor([ids], device=self.model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        processors = self._processors([self.matcher(constraint)])
        if processors is not None:
            kwargs["logits_processor"] = processors
        if streamer is not None:
            kwargs["streamer"] = streamer
        if temperature > 0:
            kwargs["temperature"] = temperature
            if top_p is not None:
                kwargs["top_p"] = top_p
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            out = self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **kwargs)
        new = out[0, len(ids):].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, len(ids), len(new)

    def iter_tokens(self, ids: list[int], max_new_tokens: int = 256, temperature: float = 0.0,
                    top_p: float | None = None, constraint: Constraint | None = None,
                    seed: int | None = None) -> Iterator[int]:
        """New token ids after the prompt ``ids``, one at a time as they are decoded (the
        end-of-sequence token is not yielded); greedy, or sampled when ``temperature`` > 0."""
        import torch  # noqa: TID251 - lazy import
        from transformers import DynamicCache

        matcher = self.matcher(constraint)
        stops = set(self.stop_ids())
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        cache = DynamicCache(config=self.model.config)
        inputs = torch.tensor([ids], device=self.model.device)
        for _ in range(max_new_tokens):
            with torch.inference_mode():
                logits = self.model(input_ids=inputs, cache=cache, use_cache=True).logits[0, -1].float()
            if matcher is not None:
                logits = _masked(logits, matcher, stops)
            token = _pick(logits, temperature, top_p, generator)
            if token in stops:
                return
            if matcher is not None and not matcher.done:
                matcher.consume(token)
            yield token
            inputs = torch.tensor([[token]], device=self.model.device)

    def generate_batch(self, conversations: Sequence[list[dict[str, Any]]], tools: Sequence[Any] | None = None,
                       max_new_tokens: int = 256,
                       constraints: Sequence[Constraint | None] | None = None) -> list[tuple[str, int, int]]:
        """Greedy continuations of several conversations in one padded batch.

        ``tools`` holds one tool list (or ``None``) per conversation. Returns, per
        conversation and in order, what :meth:`generate` returns: text, prompt tokens,
        generated tokens (up to and including the end-of-sequence token).
        """
        if tools is not None and len(tools) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(tools)} tool lists")
        prompts = [self.prompt_ids(m, tools[i] if tools is not None else None) for i, m in enumerate(conversations)]
        return self.generate_from_ids(prompts, max_new_tokens, constraints)

    def generate_from_ids(self, prompts: Sequence[list[int]], max_new_tokens: int = 256,
                          constraints: Sequence[Constraint | None] | None = None) -> list[tuple[str, int, int]]:
        """:meth:`generate_batch` for prompts already tokenised with :meth:`prompt_ids`."""
        return [
            (self.tokenizer.decode(new, skip_special_tokens=True), len(prompt), len(new))
            for prompt, new in zip(prompts, self.greedy_tokens(prompts, max_new_tokens, constraints), strict=True)
        ]

    def greedy_tokens(self, prompts: Sequence[list[int]], max_new_tokens: int = 256,
                      constraints: Sequence[Constraint | None] | None = None) -> list[list[int]]:
        """New token ids of each prompt, decoded greedily in one batch; each row ends at its
        first end-of-sequence token (kept), the batch when every row has.

        The tokens every prompt starts with (the system prompt, the tool schemas) are run
        once and their key/value cache is shared by the rows; each row's own tokens follow
        after padding (``shared + pads + rest``, masked, positions from the mask), so a
        padded row computes what it would alone.
        """
        import torch  # noqa: TID251 - lazy import

        if not prompts:
            return []
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        shared = shared_prefix_length(prompts) if len(prompts) > 1 else 0
        width = max(len(p) for p in prompts) - shared
        prefix = list(prompts[0][:shared])
        rows = [prefix + [pad] * (width - len(p) + shared) + list(p[shared:]) for p in prompts]
        masks = [[1] * shared + [0] * (width - len(p) + shared) + [1] * (len(p) - shared) for p in prompts]
        device = self.model.device
        with torch.inference_mode():
            extra: dict[str, Any] = {"cache": self.prefix_cache(prefix, len(prompts))} if shared else {}
            processors = self._processors([self.matcher(c) for c in constraints]) if constraints else None
            if processors is not None:
                extra["logits_processor"] = processors
            out = self.model.generate(
                input_ids=torch.tensor(rows, device=device), attention_mask=torch.tensor(masks, device=device),
                max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=pad, eos_token_id=eos, **extra,
            )
        stops = set(eos) if isinstance(eos, list) else {eos}
        new_tokens = []
        for row in out[:, shared + width:].tolist():
            end = next((i + 1 for i, token in enumerate(row) if token in stops), len(row))
            new_tokens.append(row[:end])
        return new_tokens

    def prefix_cache(self, prefix: list[int], rows: int) -> Any:
        """The key/value cache of ``prefix``, computed once and repeated for ``rows`` rows."""
        import torch  # noqa: TID251 - lazy import
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([prefix], device=self.model.device), cache=cache, use_cache=True)
        cache.batch_repeat_interleave(rows)
        return cache


def _masked(logits: Any, matcher: TokenMatcher, stops: set[int]) -> Any:
    import numpy as np
    import torch  # noqa: TID251 - lazy import

    allowed = np.zeros(logits.shape[0], dtype=bool)
    if not matcher.done:
        found = matcher.allowed()
        allowed[: len(found)] = found[: logits.shape[0]]
    if not allowed.any():
        allowed[[t for t in stops if t < logits.shape[0]]] = True
    return logits.masked_fill(torch.from_numpy(~allowed).to(logits.device), -float("inf"))


def _pick(logits: Any, temperature: float, top_p: float | None, generator: Any) -> int:
    """The next token: argmax, or a sample at ``temperature`` within the ``top_p`` nucleus."""
    import torch  # noqa: TID251 - lazy import

    if not temperature or temperature <= 0:
        return int(logits.argmax())
    # in float64 and shifted so that the best logit is 0: a temperature near 0 (1e-300) tends to greedy,
    # never 0/0 or inf - inf = nan
    probs = torch.softmax((logits.double() - logits.max().double()) / temperature, dim=-1)
    if top_p is not None and 0 < float(top_p) < 1:
        ordered, order = probs.sort(descending=True)
        keep = ordered.cumsum(0) - ordered < float(top_p)
        probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def constrained_processor(matchers: Sequence[TokenMatcher | None], stop_ids: Sequence[int]) -> Any:
    """A transformers logits processor: row ``i``'s next token obeys ``matchers[i]`` (``None``: free).

    Each call first moves every matcher past the token its row just got, then masks the
    tokens it rules out; a row whose constraint is complete may only end.
    """
    import numpy as np
    import torch  # noqa: TID251 - lazy import
    from transformers import LogitsProcessor

    class Constrained(LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.start is None:
                self.start = int(input_ids.shape[1])
            else:
                last = input_ids[:, -1].tolist()
                for row, matcher in enumerate(matchers):
                    if matcher is not None and not matcher.done:
                        matcher.consume(last[row])
            for row, matcher in enumerate(matchers):
                if matcher is None:
                    continue
                allowed = np.zeros(scores.shape[1], dtype=bool)
                if matcher.done:
                    allowed[list(stop_ids)] = True
                else:
                    found = matcher.allowed()
                    allowed[: len(found)] = found[: scores.shape[1]]
                    if not allowed.any():
                        allowed[list(stop_ids)] = True
                scores[row, torch.from_numpy(~allowed).to(scores.device)] = -float("inf")
            return scores

    return Constrained()


#: fewer shared leading tokens than this are not worth a separate cache
MIN_SHARED_PREFIX = 8


def shared_prefix_length(rows: Sequence[Sequence[int]], keep: int = 1) -> int:
    """How many leading tokens all ``rows`` share, leaving at least ``keep`` tokens of the
    shortest row; 0 when that is under :data:`MIN_SHARED_PREFIX`."""
    shortest = min(len(r) for r in rows)
    length = 0
    first = rows[0]
    while length < shortest - keep and all(r[length] == first[length] for r in rows):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


class TransformersProvider(Provider):
    """A local transformers model as a facade provider (loaded on first use)."""

    def __init__(self, model: str, *, adapter: str | None = None, max_new_tokens: int = 256,
                 device: str | None = None, **options: Any) -> None:
        path, query = split_model_spec(model)
        super().__init__(path, **options)
        self.adapter = adapter or query.get("adapter")
        self.device = device or query.get("device")
        self.max_new_tokens = int(query.get("max_new_tokens", max_new_tokens))
        self._local: LocalModel | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> LocalModel:
        with self._lock:
            if self._local is None:
                try:
                    self._local = LocalModel(self.model, adapter=self.adapter, device=self.device)
                except Exception as exc:
                    raise ProviderError(f"transformers:{self.model}: cannot load the model ({exc})") from exc
            return self._local

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
             params: Mapping[str, Any]) -> ProviderResponse:
        constraint = _constraint(params, tools)
        local = self._loaded()
        max_new = int(params.get("max_tokens") or params.get("max_new_tokens") or self.max_new_tokens)
        with self._lock:
            text, prompt_tokens, new_tokens = local.generate(
                messages, tools, max_new_tokens=max_new,
                temperature=float(params.get("temperature") or 0.0), top_p=params.get("top_p"),
                constraint=constraint,
            )
        text = StopText(stop_sequences(params.get("stop"))).cut(text, final=True)[0]
        content, calls = parse_tagged_tool_calls(text)
        return ProviderResponse(
            content=content if (content or not calls) else None,
            tool_calls=tuple(calls),
            input_tokens=prompt_tokens,
            output_tokens=new_tokens,
            model=self.model,
        )

    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               params: Mapping[str, Any]) -> Iterator[StreamEvent]:
        """The reply token by token (tool calls come whole, once the model has written them)."""
        from wilson_core.streams import StreamInfo
        from wilson_core.tagged_stream import TaggedTextStream

        constraint = _constraint(params, tools)
        local = self._loaded()
        max_new = int(params.get("max_tokens") or params.get("max_new_tokens") or self.max_new_tokens)
        text = TaggedTextStream()
        stopper = StopText(stop_sequences(params.get("stop")))
        with self._lock:
            ids = local.prompt_ids(messages, tools)
            tokens: list[int] = []
            decoded = ""
            finish = "length"
            stopped = False
            tokens_iter = local.iter_tokens(ids, max_new, float(params.get("temperature") or 0.0),
                                            params.get("top_p"), constraint, params.get("seed"))
            for token in tokens_iter:
                tokens.append(token)
                now = local.tokenizer.decode(tokens, skip_special_tokens=True)
                if now.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for the next token
                    continue
                now, stopped = stopper.cut(now)
                yield from text.feed(now[len(decoded):])
                decoded = now
                if stopped:
                    break
            if stopped or len(tokens) < max_new:
                finish = "stop"
            if not stopped:
                yield from text.feed(stopper.cut(local.tokenizer.decode(tokens, skip_special_tokens=True),
                                                 final=True)[0][len(decoded):])
            yield from text.end()
        yield StreamInfo(input_tokens=len(ids), output_tokens=len(tokens), model=self.model, finish_reason=finish)

    def chat_batch(self, conversations: Sequence[list[dict[str, Any]]], tools: Sequence[Any],
                   params: Mapping[str, Any]) -> list[ProviderResponse]:
        """Greedy answers to several conversations in one padded batch (what ``chat`` answers
        one at a time); used by the evaluators (``wilson_core.evaluators.running.generate``)."""
        if float(params.get("temperature") or 0.0) > 0:
            return [self.chat(list(m), t, params) for m, t in zip(conversations, tools, strict=True)]
        local = self._loaded()
        max_new = int(params.get("max_tokens") or params.get("max_new_tokens") or self.max_new_tokens)
        constraints = [_constraint(params, t) for t in tools]  # the same structured output as chat()
        with self._lock:
            outputs = local.generate_batch([list(m) for m in conversations], list(tools), max_new_tokens=max_new,
                                           constraints=constraints if any(constraints) else None)
        responses = []
        for text, prompt_tokens, new_tokens in outputs:
            content, calls = parse_tagged_tool_calls(text)
            responses.append(ProviderResponse(content=content if (content or not calls) else None,
                                              tool_calls=tuple(calls), input_tokens=prompt_tokens,
                                              output_tokens=new_tokens, model=self.model))
        return responses

    def close(self) -> None:
        self._local = None


def _constraint(params: Mapping[str, Any], tools: Any) -> Constraint | None:
    try:
        return from_params(params, tools)
    except ConstraintError as exc:
        raise ProviderError(f"transformers: {exc}") from exc
