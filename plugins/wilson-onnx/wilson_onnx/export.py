"""ONNX export in the folder layout Transformers.js loads from local files::

    OUT/config.json                 model config, with a top-level rope_theta
    OUT/generation_config.json      eos / bos / pad ids, greedy by default
    OUT/tokenizer.json              the tokenizer, as trained
    OUT/tokenizer_config.json       tokenizer_class PreTrainedTokenizerFast, chat_template inside
    OUT/onnx/model.onnx             fp32 decoder with past key values (dtype "fp32")
    OUT/onnx/model_quantized.onnx   int8 weights (MatMulNBits, 8 bits), fp32 activations (dtype "q8")

The decoder is exported with ``torch.onnx.export(dynamo=True)``; its inputs and
outputs carry the names Transformers.js uses for decoder-only models
(``input_ids``, ``attention_mask``, ``position_ids``,
``past_key_values.N.key|value`` -> ``logits``, ``present.N.key|value``) and its
dynamic dimensions the names it reads (``batch_size``, ``sequence_length``,
``past_sequence_length``): other names make it build an empty cache of batch 0.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployError

#: protobuf's 2 GiB limit: larger models would need ONNX external data.
MAX_SINGLE_FILE_BYTES = 2_000_000_000
#: weights per int8 scale in the quantised model.
INT8_BLOCK_SIZE = 32

_GENERATION_TAG = re.compile(r"\{%-?\s*(?:generation|endgeneration)\s*-?%\}")


def cache_shape(config: Any) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a decoder config (object or dict)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    heads = int(get("num_attention_heads"))
    kv_heads = int(get("num_key_value_heads") or heads)
    head_dim = get("head_dim") or int(get("hidden_size")) // heads
    return int(get("num_hidden_layers")), kv_heads, int(head_dim)


def input_names(layers: int) -> list[str]:
    names = ["input_ids", "attention_mask", "position_ids"]
    for i in range(layers):
        names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    return names


def output_names(layers: int) -> list[str]:
    names = ["logits"]
    for i in range(layers):
        names += [f"present.{i}.key", f"present.{i}.value"]
    return names


def _decoder_wrapper(model: Any) -> Any:
    """The model as a module of flat tensors: (ids, mask, positions, *past) -> (logits, *present)."""
    import torch  # noqa: TID251 - lazy import
    from transformers import DynamicCache

    layers = cache_shape(model.config)[0]

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
            cache = DynamicCache(config=self.model.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return Decoder().eval()


def export_decoder(model: Any, path: Path) -> None:
    """Write ``model`` (float32, eval) as an ONNX decoder with past key values to ``path``."""
    import torch  # noqa: TID251 - lazy import
    from torch.export import Dim  # noqa: TID251 - lazy import

    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size > MAX_SINGLE_FILE_BYTES:
        raise DeployError(
            f"the model has {size / 1e9:.1f} GB of weights; the transformersjs deployer writes "
            "single-file ONNX models (at most 2 GB)"
        )
    layers, kv_heads, head_dim = cache_shape(model.config)
    batch, seq, past_len = 2, 3, 4
    ids = torch.randint(0, int(model.config.vocab_size), (batch, seq))
    mask = torch.ones(batch, past_len + seq, dtype=torch.int64)
    positions = torch.arange(past_len, past_len + seq).unsqueeze(0).expand(batch, seq)
    past = [torch.randn(batch, kv_heads, past_len, head_dim) for _ in range(2 * layers)]

    b, s = Dim("batch_size"), Dim("sequence_length")
    p, t = Dim("past_sequence_length"), Dim("total_sequence_length")
    shapes = {
        "input_ids": {0: b, 1: s},
        "attention_mask": {0: b, 1: t},
        "position_ids": {0: b, 1: s},
        "past": tuple({0: b, 2: p} for _ in range(2 * layers)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed" is noise here
    try:
        from wilson_core.progress import heartbeat

        with torch.no_grad(), warnings.catch_warnings(), heartbeat("exporting the decoder to ONNX"):
            warnings.simplefilter("ignore")  # deprecation chatter from transformers and the exporter
            program = torch.onnx.export(
                _decoder_wrapper(model),
                (ids, mask, positions, *past),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=input_names(layers),
                output_names=output_names(layers),
                optimize=True,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    program.save(str(path))


def quantize_int8(src: Path, dst: Path, block_size: int = INT8_BLOCK_SIZE) -> None:
    """int8 weights, fp32 activations: every MatMul with a constant weight becomes
    ``MatMulNBits`` (8 bits, symmetric, one scale per ``block_size`` weights).

    Weight-only: ``quantize_dynamic`` (the older q8 recipe) also quantises activations
    per tensor, which put SmolLM2-135M's logits off by up to ~20 and changed the top-1
    token at a third of the positions; this keeps them within ~1.  8-bit MatMulNBits
    needs onnxruntime >= 1.22 (Transformers.js 4.x; 3.x's runtime has 4-bit only).

    The output head (the MatMul that makes ``logits``) stays float32, and so does the
    embedding table (a ``Gather``, which MatMulNBits does not touch; a tied head is a
    ``Transpose`` of that table and is never a constant MatMul weight).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    quant_logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quant_logger.level
    quant_logger.setLevel(logging.WARNING)  # one INFO line per node otherwise
    try:
        model = onnx.load(str(src))
        head = [node.name for node in model.graph.node if "logits" in node.output and node.op_type == "MatMul"]
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=8)
        quantizer = MatMulNBitsQuantizer(
            model, bits=8, block_size=block_size, is_symmetric=True, algo_config=config,
            nodes_to_exclude=head,
        )
        from wilson_core.progress import heartbeat

        with heartbeat("quantising to int8"):
            quantizer.process()
    finally:
        quant_logger.setLevel(level)
    quantizer.model.save_model_to_file(str(dst), False)


def strip_generation_tags(template: str) -> str:
    """Drop ``{% generation %}`` markers (training-only; Transformers.js' Jinja rejects them)."""
    return _GENERATION_TAG.sub("", template)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _token_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def write_config_files(model: Any, tokenizer: Any, out: Path) -> list[Path]:
    """config.json, generation_config.json, tokenizer.json, tokenizer_config.json in ``out``."""
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["use_cache"] = True
    rope = config.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    config["architectures"] = [type(model).__name__]
    _write_json(out / "config.json", config)

    eos = _token_ids(getattr(model.generation_config, "eos_token_id", None))
    eos += [i for i in _token_ids(config.get("eos_token_id")) + _token_ids(tokenizer.eos_token_id) if i not in eos]
    generation = {
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.get("bos_token_id"),
        "eos_token_id": eos if len(eos) != 1 else eos[0],
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [None])[0],
        "do_sample": False,
    }
    _write_json(out / "generation_config.json", generation)

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(Path(tmp) / "tokenizer.json", out / "tokenizer.json")
        saved = json.loads((Path(tmp) / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config = {
        key: value
        for key, value in saved.items()
        if key not in ("tokenizer_class", "backend", "chat_template", "auto_map")
    }
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config["chat_template"] = strip_generation_tags(tokenizer.chat_template)
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            tok_config[name] = str(value)
    tok_config["clean_up_tokenization_spaces"] = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    if tok_config.get("model_max_length", 0) > 10**9:
        tok_config["model_max_length"] = int(config.get("max_position_embeddings") or 2048)
    _write_json(out / "tokenizer_config.json", tok_config)
    return [out / name for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")]
