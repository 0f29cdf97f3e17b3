"""Running an exported folder in onnxruntime: logits, and generation with the KV cache.

    lm = OnnxCausalLM("deploy/onnx-model", dtype="q8")
    ids = lm.generate(prompt_ids, max_new_tokens=64, eos_ids={2})

numpy and onnxruntime are imported when a model is opened, not with this module.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Any

from wilson_core.errors import ProviderError

from .export import cache_shape

#: Transformers.js ``dtype`` names -> file under ``onnx/``.
DTYPE_FILES = {"fp32": "model.onnx", "q8": "model_quantized.onnx"}


def model_file(folder: str | Path, dtype: str) -> Path:
    """The ONNX file of ``dtype`` in an exported folder (checked)."""
    if dtype not in DTYPE_FILES:
        raise ProviderError(f"unknown ONNX dtype {dtype!r}; choose one of: {', '.join(DTYPE_FILES)}")
    path = Path(folder) / "onnx" / DTYPE_FILES[dtype]
    if not path.exists():
        raise ProviderError(
            f"{path} not found: {folder} is not a 'wilson deploy transformersjs' folder "
            f"with the {dtype} model"
        )
    return path


class OnnxCausalLM:
    """A decoder exported by this plugin, in an onnxruntime CPU session."""

    def __init__(self, folder: str | Path, dtype: str = "fp32", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.path = model_file(folder, dtype)
        config_path = self.folder / "config.json"
        try:
            self.config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProviderError(f"cannot read {config_path}: {exc}") from None
        self.layers, self.kv_heads, self.head_dim = cache_shape(self.config)
        self.vocab_size = int(self.config.get("vocab_size") or 0) or None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _empty_past(self, batch: int) -> dict[str, Any]:
        import numpy as np

        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {
            f"past_key_values.{i}.{kind}": empty for i in range(self.layers) for kind in ("key", "value")
        }

    def step(self, ids: Any, past: dict[str, Any], past_length: int) -> tuple[Any, dict[str, Any]]:
        """Run ``ids`` (batch 1, numpy int64) after ``past``; returns logits and the new cache."""
        import numpy as np

        length = ids.shape[1]
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones((1, past_length + length), dtype=np.int64),
            **past,
        }
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.arange(past_length, past_length + length, dtype=np.int64)[None]
        results = self.session.run(None, feed)
        named = dict(zip(self.outputs, results, strict=True))
        cache = {
            f"past_key_values.{i}.{kind}": named[f"present.{i}.{kind}"]
            for i in range(self.layers)
            for kind in ("key", "value")
        }
        return named["logits"], cache

    def logits(self, ids: Sequence[int]) -> Any:
        """Logits at every position of ``ids`` (one forward pass from an empty cache)."""
        import numpy as np

        logits, _ = self.step(np.asarray([list(ids)], dtype=np.int64), self._empty_past(1), 0)
        return logits[0]

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        eos_ids: Container[int] = (),
        temperature: float = 0.0,
        seed: int | None = None,
        matcher: Any = None,
        top_p: float | None = None,
    ) -> list[int]:
        """New token ids after ``prompt_ids``: greedy (or sampled when ``temperature`` > 0),
        stopping after an id in ``eos_ids`` (included) or ``max_new_tokens``.

        ``matcher`` (a :class:`wilson_core.constraints.TokenMatcher`) rules tokens out at each
        step (a complete reply may only end).  ``top_p`` < 1 samples from the smallest set of
        tokens whose probabilities add up to ``top_p`` (nucleus sampling).
        """
        return list(self.iter_generate(prompt_ids, max_new_tokens, eos_ids, temperature, seed, matcher, top_p))

    def iter_generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        eos_ids: Container[int] = (),
        temperature: float = 0.0,
        seed: int | None = None,
        matcher: Any = None,
        top_p: float | None = None,
    ) -> Iterator[int]:
        """:meth:`generate`, one token at a time as each is decoded."""
        import numpy as np

        if not prompt_ids:
            raise ProviderError("cannot generate from an empty prompt")
        rng = np.random.default_rng(seed)
        ids = np.asarray([list(prompt_ids)], dtype=np.int64)
        past, length = self._empty_past(1), 0
        for _ in range(max_new_tokens):
            logits, past = self.step(ids, past, length)
            length += ids.shape[1]
            last = logits[0, -1].astype(np.float64)
            if matcher is not None:
                last = _constrain(last, matcher, eos_ids)
            if temperature and temperature > 0:
                with np.errstate(over="ignore"):  # a temperature near 0: -inf, exp -> 0 (greedy in the limit)
                    probs = np.exp((last - last.max()) / temperature)
                probs /= probs.sum()
                if top_p is not None and 0 < top_p < 1:  # keep the most likely tokens up to top_p
                    order = np.argsort(-probs, kind="stable")
                    keep = order[: int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1]
                    nucleus = np.zeros_like(probs)
                    nucleus[keep] = probs[keep]
                    probs = nucleus / nucleus.sum()
                token = int(rng.choice(len(probs), p=probs))
            else:
                token = int(last.argmax())
            if matcher is not None and not matcher.done:
                matcher.consume(token)
            yield token
            if token in eos_ids:
                return
            ids = np.asarray([[token]], dtype=np.int64)


def _constrain(logits: Any, matcher: Any, eos_ids: Container[int]) -> Any:
    """``logits`` with the tokens ``matcher`` rules out at -inf (only the end ones once it is done)."""
    import numpy as np

    allowed = np.zeros(logits.shape[0], dtype=bool)
    if not matcher.done:
        found = matcher.allowed()
        allowed[: len(found)] = found[: logits.shape[0]]
    if not allowed.any():
        allowed[[int(t) for t in eos_ids if int(t) < logits.shape[0]]] = True  # type: ignore[attr-defined]
    return np.where(allowed, logits, -np.inf)
