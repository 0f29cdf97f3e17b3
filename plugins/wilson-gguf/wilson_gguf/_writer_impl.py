"""Writing GGUF files with the ``gguf`` package's :class:`gguf.GGUFWriter` (model and
LoRA adapter).  Heavy module: imported only when a conversion runs.

What llama.cpp needs that a plain tensor dump lacks:

- q and k projection rows permuted per head from Hugging Face's rotate-half rope
  layout to GGML's interleaved one (k with the kv-head count), for ``llama``; for a
  LoRA adapter only ``lora_B`` of q/k is permuted (the rows are B's rows);
- the tokenizer as ``tokenizer.ggml.*`` metadata: tokens, token types, merges,
  pre-tokenizer name, special token ids, ``add_bos_token``, and the chat template
  (``tokenizer.chat_template``; transformers' ``{% generation %}`` markers removed,
  as llama.cpp's template engine does not know them and they do not change the text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from wilson_core.interfaces import DeployError

from .source import PERMUTED_QK, AdapterSource, ModelSource

QUANT_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q5_1": (gguf.GGMLQuantizationType.Q5_1, gguf.LlamaFileType.MOSTLY_Q5_1),
    "q5_0": (gguf.GGMLQuantizationType.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}

#: the output head's type per file type (``output.weight``, or ``token_embd.weight`` when the
#: embeddings are tied and it is the head), unless ``-o output_type=`` says otherwise.  Measured
#: on SmolLM2-135M (tied, vocab 49k): an F32 head takes F16 files from 0.024 to 0.015 max
#: |log-prob diff| and BF16 from 0.19 to 0.17; an F16 head takes Q8_0 from 1.04-1.12 to
#: 0.78-0.88 and halves the KL divergence of a tuned model (llama.cpp rounds the activations
#: to the weight's dot type, so a quantised head rounds the last hidden state too).  The 4- and
#: 5-bit files keep the head in Q8_0 (llama.cpp's ``llama-quantize`` uses Q6_K there, a type
#: the ``gguf`` package does not write).
HEAD_TYPES = {"f32": "f32", "f16": "f32", "bf16": "f32", "q8_0": "f16", "q5_1": "q8_0",
              "q5_0": "q8_0", "q4_1": "q8_0", "q4_0": "q8_0"}

_GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")

TOKEN_NORMAL = gguf.TokenType.NORMAL
TOKEN_CONTROL = gguf.TokenType.CONTROL
TOKEN_USER = gguf.TokenType.USER_DEFINED
TOKEN_UNUSED = gguf.TokenType.UNUSED


def strip_generation_markers(template: str) -> str:
    """The chat template without ``{% generation %}``/``{% endgeneration %}`` (same output text)."""
    return _GENERATION_TAG.sub("", template)


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Per head, reorder rows from rotate-half (first half, second half) to interleaved pairs."""
    rows = w.shape[0]
    return (
        w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _tensor_map(source: ModelSource) -> Any:
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == source.gguf_arch)
    return gguf.get_tensor_name_map(arch, source.hparams()["layers"])


def gguf_name(tmap: Any, hf_name: str) -> str:
    name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise DeployError(f"tensor {hf_name!r} has no GGUF name for this architecture")
    return name


def _permute_for(source: ModelSource, hf_name: str) -> int | None:
    if source.gguf_arch not in PERMUTED_QK or not hf_name.endswith(".weight"):
        return None
    hp = source.hparams()
    if hf_name.endswith("self_attn.q_proj.weight"):
        return hp["heads"]
    if hf_name.endswith("self_attn.k_proj.weight"):
        return hp["kv_heads"]
    return None


def _encode(array: np.ndarray, qtype: Any) -> tuple[np.ndarray, Any]:
    """``array`` (float32) in ``qtype``; 1-D tensors and rows that do not fit the block stay exact."""
    if array.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32), gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if array.shape[-1] % block:
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(array, qtype), qtype


def _add_hparams(writer: Any, source: ModelSource, name: str) -> None:
    hp = source.hparams()
    writer.add_name(name)
    writer.add_context_length(hp["context"])
    writer.add_embedding_length(hp["hidden"])
    writer.add_block_count(hp["layers"])
    writer.add_feed_forward_length(hp["ffn"])
    writer.add_head_count(hp["heads"])
    writer.add_head_count_kv(hp["kv_heads"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp["eps"])
    writer.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != hp["hidden"] // hp["heads"]:
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_vocab_size(hp["vocab"])


# -- tokenizer ----------------------------------------------------------------------------


def _pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    raise DeployError(
        "the tokenizer's pre-tokenizer is not one whose llama.cpp name is known "
        f"({json.dumps(pre)[:200]}); pass --option tokenizer_gguf=FILE.gguf to copy the "
        "tokenizer of the GGUF the base model came from"
    )


def chat_template_of(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _add_hf_tokenizer(writer: Any, source: ModelSource) -> None:
    path = source.path
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        raise DeployError(f"{path} has no tokenizer.json (a fast tokenizer is needed for GGUF)")
    data = json.loads(tok_file.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise DeployError(f"tokenizer model {model.get('type')!r} in {tok_file}: only byte-level BPE converts")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens") or []}
    for t in added.values():
        vocab[t["content"]] = t["id"]
    size = source.hparams()["vocab"]
    by_id: dict[int, str] = {i: tok for tok, i in vocab.items()}
    if max(by_id) >= size:
        raise DeployError(f"tokenizer has id {max(by_id)} but the model's vocab_size is {size}")
    tokens, types = [], []
    for i in range(size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
        elif text in added:
            tokens.append(text)
            types.append(TOKEN_CONTROL if added[text].get("special") else TOKEN_USER)
        else:
            tokens.append(text)
            types.append(TOKEN_NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(data))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)

    tok_config_file = path / "tokenizer_config.json"
    tok_config = json.loads(tok_config_file.read_text(encoding="utf-8")) if tok_config_file.is_file() else {}

    def token_id(value: Any) -> int | None:
        if isinstance(value, dict):
            value = value.get("content")
        return vocab.get(value) if isinstance(value, str) else None

    special = {
        "bos": token_id(tok_config.get("bos_token")),
        "eos": token_id(tok_config.get("eos_token")),
        "pad": token_id(tok_config.get("pad_token")),
        "unk": token_id(tok_config.get("unk_token")),
    }
    eos_config = source.config.get("eos_token_id")
    if special["eos"] is None and isinstance(eos_config, int):
        special["eos"] = eos_config
    for kind, value in special.items():
        if value is not None:
            getattr(writer, f"add_{kind}_token_id")(value)
    # llama.cpp adds BOS only when told to; say what the HF tokenizer does.
    post = data.get("post_processor") or {}
    adds_bos = bool(tok_config.get("add_bos_token", False))
    if post.get("type") == "TemplateProcessing":
        first = (post.get("single") or [{}])[0]
        adds_bos = "SpecialToken" in first
    writer.add_add_bos_token(adds_bos)
    writer.add_add_eos_token(bool(tok_config.get("add_eos_token", False)))


def _copy_gguf_tokenizer(writer: Any, tokenizer_gguf: Path, source: ModelSource) -> dict[str, Any]:
    """Copy every ``tokenizer.*`` key of ``tokenizer_gguf`` (pre-tokenizer name included)."""
    reader = gguf.GGUFReader(str(tokenizer_gguf))
    copied: dict[str, Any] = {}
    for name, fld in reader.fields.items():
        if not name.startswith("tokenizer.") or name == "tokenizer.chat_template":
            continue
        vtype = fld.types[0]
        value = fld.contents()
        sub_type = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, vtype, sub_type=sub_type)
        copied[name] = value
    tokens = copied.get("tokenizer.ggml.tokens") or []
    if len(tokens) != source.hparams()["vocab"]:
        raise DeployError(
            f"{tokenizer_gguf} has {len(tokens)} tokens but the model's vocab_size is "
            f"{source.hparams()['vocab']}: not the tokenizer this model was trained with"
        )
    tok_file = source.path / "tokenizer.json"
    if source.gguf_file is None and tok_file.is_file():
        vocab = json.loads(tok_file.read_text(encoding="utf-8")).get("model", {}).get("vocab", {})
        mismatched = [t for t, i in vocab.items() if i < len(tokens) and tokens[i] != t]
        if mismatched:
            raise DeployError(
                f"{tokenizer_gguf}'s tokens differ from {tok_file} (e.g. {mismatched[0]!r}): "
                "not the tokenizer this model was trained with"
            )
    if "tokenizer.chat_template" in reader.fields:
        copied["tokenizer.chat_template"] = reader.fields["tokenizer.chat_template"].contents()
    return copied


def _add_tokenizer(writer: Any, source: ModelSource) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if source.tokenizer_gguf is not None:
        copied = _copy_gguf_tokenizer(writer, source.tokenizer_gguf, source)
        info["tokenizer_from"] = str(source.tokenizer_gguf)
        info["pre_tokenizer"] = copied.get("tokenizer.ggml.pre")
        template = chat_template_of(source.path) if source.gguf_file is None else None
        template = template or copied.get("tokenizer.chat_template")
    else:
        _add_hf_tokenizer(writer, source)
        info["tokenizer_from"] = str(source.path / "tokenizer.json")
        info["pre_tokenizer"] = "gpt-2"
        template = chat_template_of(source.path)
    if template:
        writer.add_chat_template(strip_generation_markers(template))
        info["chat_template"] = True
    return info


# -- files --------------------------------------------------------------------------------


def write_model(source: ModelSource, state: dict[str, Any], out_file: Path, quant: str,
                name: str, head: str | None = None) -> dict[str, Any]:
    """Write the model GGUF (``state``: HF names -> float32 torch tensors).

    ``head`` is the output head's type (default :data:`HEAD_TYPES`); the returned
    ``stored_types`` (HF name -> GGML type name) says how each tensor was stored.
    """
    qtype, ftype = QUANT_TYPES[quant]
    head = head or HEAD_TYPES[quant]
    head_type = QUANT_TYPES[head][0]
    tmap = _tensor_map(source)
    hp = source.hparams()
    writer = gguf.GGUFWriter(str(out_file), source.gguf_arch)
    _add_hparams(writer, source, name)
    writer.add_file_type(ftype)
    info = _add_tokenizer(writer, source)
    kept_types: dict[str, int] = {}
    stored: dict[str, str] = {}
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and hp["tied"]:
            continue  # llama.cpp falls back to token_embd when output.weight is absent
        array = tensor.numpy().astype(np.float32)
        heads = _permute_for(source, hf_name)
        if heads is not None:
            array = permute_rows(array, heads)
        name_in_file = gguf_name(tmap, hf_name)
        is_head = name_in_file == "output.weight" or (hp["tied"] and name_in_file == "token_embd.weight")
        data, used = _encode(array, head_type if is_head else qtype)
        kept_types[used.name] = kept_types.get(used.name, 0) + 1
        stored[hf_name] = used.name
        writer.add_tensor(name_in_file, data, raw_dtype=used)
    _flush(writer)
    info["tensor_types"] = kept_types
    info["output_type"] = head
    info["stored_types"] = stored
    return info


def round_trip(array: np.ndarray, type_name: str) -> np.ndarray:
    """``array`` (float32) as stored in a GGUF tensor of type ``type_name`` and read back."""
    qtype = gguf.GGMLQuantizationType[type_name]
    if qtype == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16).astype(np.float32)
    restored = gguf.quants.dequantize(gguf.quants.quantize(array.astype(np.float32), qtype), qtype)
    return np.ascontiguousarray(restored.reshape(array.shape), dtype=np.float32)


def write_adapter(source: ModelSource, adapter: AdapterSource, tensors: dict[str, Any],
                  out_file: Path, name: str, f16: bool = False) -> dict[str, Any]:
    """Write a llama.cpp LoRA adapter GGUF (``tensors``: base weight name -> (A, B))."""
    tmap = _tensor_map(source)
    writer = gguf.GGUFWriter(str(out_file), source.gguf_arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    writer.add_name(name)
    dtype = np.float16 if f16 else np.float32
    qtype = gguf.GGMLQuantizationType.F16 if f16 else gguf.GGMLQuantizationType.F32
    for hf_name, (a, b) in tensors.items():
        a_np = a.numpy().astype(np.float32)
        b_np = b.numpy().astype(np.float32)
        heads = _permute_for(source, hf_name)
        if heads is not None:
            b_np = permute_rows(b_np, heads)
        base = gguf_name(tmap, hf_name)
        writer.add_tensor(f"{base}.lora_a", a_np.astype(dtype), raw_dtype=qtype)
        writer.add_tensor(f"{base}.lora_b", b_np.astype(dtype), raw_dtype=qtype)
    _flush(writer)
    return {"alpha": adapter.alpha, "rank": adapter.rank, "tensors": 2 * len(tensors)}


def _flush(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
