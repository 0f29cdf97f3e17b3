"""Reading what is deployed: a Hugging Face model folder (or a GGUF-only base) and a
PEFT LoRA adapter folder, with the checks that make bad input a clear error.

Heavy libraries (torch, safetensors, transformers) are imported inside functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attrs import field, frozen

from wilson_core.interfaces import DeployError

#: Hugging Face ``model_type`` -> GGUF architecture name, for the architectures we convert.
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
#: GGUF architectures whose q/k rows llama.cpp expects in the interleaved (non-NeoX) rope layout.
PERMUTED_QK = {"llama"}


@frozen
class ModelSource:
    """A model to convert: where it is, its config, and how to load its tokenizer."""

    path: Path
    config: dict[str, Any]
    #: the GGUF file the model was loaded from, when the folder holds no HF config
    #: (its tokenizer metadata is copied as it is).
    gguf_file: Path | None = None
    #: a GGUF whose ``tokenizer.*`` metadata to keep (a base loaded from GGUF).
    tokenizer_gguf: Path | None = None
    extra: dict[str, Any] = field(factory=dict)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "?"))

    @property
    def gguf_arch(self) -> str:
        return ARCHITECTURES[self.model_type]

    def hparams(self) -> dict[str, Any]:
        c = self.config
        heads = int(c["num_attention_heads"])
        hidden = int(c["hidden_size"])
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        theta = c.get("rope_theta") or (rope.get("rope_theta") if isinstance(rope, dict) else None)
        rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
        if rope_type not in (None, "default"):
            raise DeployError(
                f"rope scaling {rope_type!r} in {self.path}/config.json is not supported by the gguf "
                "deployer (only the default rope)"
            )
        return {
            "hidden": hidden,
            "layers": int(c["num_hidden_layers"]),
            "heads": heads,
            "kv_heads": int(c.get("num_key_value_heads") or heads),
            "head_dim": int(c.get("head_dim") or hidden // heads),
            "ffn": int(c["intermediate_size"]),
            "context": int(c.get("max_position_embeddings") or 2048),
            "eps": float(c.get("rms_norm_eps", 1e-6)),
            "rope_theta": float(theta or 10000.0),
            "vocab": int(c["vocab_size"]),
            "tied": bool(c.get("tie_word_embeddings", False)),
        }


def _find_gguf(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DeployError(
                f"{path} holds several GGUF files ({', '.join(p.name for p in found)}); "
                "pass the one to use"
            )
    return None


def _tokenizer_gguf_hint(path: Path, options: dict[str, Any]) -> Path | None:
    """The GGUF a model (or its base) was loaded from, if recorded anywhere we know of."""
    hint = options.get("tokenizer_gguf")
    candidates: list[Any] = [hint] if hint else []
    for name, key in (("wilson_model.json", "base_gguf"), ("config.json", "_name_or_path"),
                      ("adapter_config.json", "base_model_name_or_path")):
        meta = path / name
        if meta.is_file():
            try:
                candidates.append(json.loads(meta.read_text(encoding="utf-8")).get(key))
            except ValueError:
                pass
    # a merged model written by wilson-train: its run's adapter/wilson_base.json names the base
    for base_card in (path / "wilson_base.json", path.parent / "adapter" / "wilson_base.json"):
        if base_card.is_file():
            try:
                card = json.loads(base_card.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if card.get("gguf_file") and card.get("location"):
                candidates.append(str(Path(card["location"]) / card["gguf_file"]))
    for candidate in candidates:
        if not candidate or not isinstance(candidate, str):
            continue
        try:
            found = _find_gguf(Path(candidate))
        except DeployError:
            found = None
        if found is not None:
            return found
        if hint and candidate == hint:
            raise DeployError(f"--option tokenizer_gguf={hint}: no GGUF file there")
    return None


def open_model(model: str | Path, options: dict[str, Any] | None = None) -> ModelSource:
    """Inspect ``model`` (an HF folder, or a folder/file holding one base GGUF)."""
    options = options or {}
    path = Path(model)
    if not path.exists():
        raise DeployError(f"model {path} does not exist")
    config_file = path / "config.json" if path.is_dir() else None
    if config_file is not None and config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DeployError(f"{config_file} is not valid JSON: {exc}") from None
        source = ModelSource(path=path, config=config,
                             tokenizer_gguf=_tokenizer_gguf_hint(path, options))
    else:
        gguf_file = _find_gguf(path)
        if gguf_file is None:
            raise DeployError(f"{path} has no config.json (and no GGUF file): not a model folder")
        source = ModelSource(path=gguf_file.parent, config=_config_from_gguf(gguf_file),
                             gguf_file=gguf_file, tokenizer_gguf=gguf_file)
    if source.model_type not in ARCHITECTURES:
        raise DeployError(
            f"unsupported architecture {source.model_type!r} (from {path}); the gguf deployer "
            f"converts: {', '.join(sorted(ARCHITECTURES))}"
        )
    source.hparams()  # raises for unsupported settings
    return source


def _config_from_gguf(gguf_file: Path) -> dict[str, Any]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except Exception as exc:  # transformers raises many kinds
        raise DeployError(f"cannot read the model config from {gguf_file}: {exc}") from None
    return config.to_dict()


def load_state_dict(source: ModelSource, model: Any = None) -> dict[str, Any]:
    """The model's tensors as float32 torch tensors, by HF name (from ``model`` if given)."""
    import torch  # noqa: TID251 - lazy import

    if model is not None or source.gguf_file is not None:
        model = model if model is not None else load_torch_model(source)
        return {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}
    from safetensors.torch import load_file

    files = sorted(source.path.glob("*.safetensors"))
    state: dict[str, Any] = {}
    if files:
        for f in files:
            state.update(load_file(str(f)))
    else:
        bins = sorted(source.path.glob("pytorch_model*.bin"))
        if not bins:
            raise DeployError(f"no weights (*.safetensors or pytorch_model*.bin) in {source.path}")
        for f in bins:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return {k: v.to(torch.float32) for k, v in state.items()}


def load_torch_model(source: ModelSource, adapter: Path | None = None) -> Any:
    """The PyTorch model (float32, eval mode), with the adapter applied if given."""
    import torch  # noqa: TID251 - lazy import
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if source.gguf_file is not None:
        kwargs["gguf_file"] = source.gguf_file.name
    model = AutoModelForCausalLM.from_pretrained(str(source.path), **kwargs)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model


def load_hf_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if source.gguf_file is not None:
        return AutoTokenizer.from_pretrained(str(source.path), gguf_file=source.gguf_file.name)
    # PreTrainedTokenizerFast keeps the folder's own pre-tokenizer (AutoTokenizer may rebuild it).
    return PreTrainedTokenizerFast.from_pretrained(str(source.path))


# -- adapters -----------------------------------------------------------------------------


@frozen
class AdapterSource:
    path: Path
    config: dict[str, Any]

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    @property
    def alpha(self) -> float:
        """The alpha llama.cpp needs so that its ``alpha / rank`` equals PEFT's scale."""
        import math

        alpha = float(self.config.get("lora_alpha") or self.rank)
        if self.config.get("use_rslora"):
            return alpha * math.sqrt(self.rank)  # PEFT scales by alpha / sqrt(r)
        return alpha


def open_adapter(adapter: str | Path) -> AdapterSource:
    path = Path(adapter)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise DeployError(f"{path} has no adapter_config.json: not a PEFT adapter folder")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise DeployError(f"adapter {path} is {config.get('peft_type')}, only LoRA adapters convert to GGUF")
    for key, why in (("use_dora", "DoRA"), ("rank_pattern", "per-module ranks"),
                     ("alpha_pattern", "per-module alphas"), ("modules_to_save", "fully trained modules")):
        if config.get(key):
            raise DeployError(f"adapter {path} uses {why} ({key}), which a GGUF LoRA adapter cannot hold")
    if config.get("bias", "none") != "none":
        raise DeployError(f"adapter {path} trains biases (bias={config['bias']!r}); GGUF adapters cannot hold them")
    return AdapterSource(path=path, config=config)


def load_adapter_tensors(adapter: AdapterSource) -> dict[str, Any]:
    """``{base weight name: (lora_A, lora_B)}`` as float32 torch tensors."""
    import torch  # noqa: TID251 - lazy import

    files = sorted(adapter.path.glob("adapter_model*.safetensors"))
    if files:
        from safetensors.torch import load_file

        raw: dict[str, Any] = {}
        for f in files:
            raw.update(load_file(str(f)))
    elif (adapter.path / "adapter_model.bin").is_file():
        raw = torch.load(str(adapter.path / "adapter_model.bin"), map_location="cpu", weights_only=True)
    else:
        raise DeployError(f"no adapter weights (adapter_model.safetensors) in {adapter.path}")
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in raw.items():
        name = key.removeprefix("base_model.model.")
        for part, slot in ((".lora_A.weight", "A"), (".lora_B.weight", "B")):
            if name.endswith(part):
                base = name[: -len(part)] + ".weight"
                pairs.setdefault(base, {})[slot] = tensor.to(torch.float32)
                break
        else:
            raise DeployError(
                f"adapter {adapter.path} holds tensor {key!r}, which is not a LoRA A/B matrix "
                "(embedding LoRA and other kinds are not supported)"
            )
    result = {}
    for base, parts in pairs.items():
        if set(parts) != {"A", "B"}:
            raise DeployError(f"adapter {adapter.path}: {base} lacks its lora_A or lora_B")
        result[base] = (parts["A"], parts["B"])
    return result


def check_adapter_matches(adapter: AdapterSource, tensors: dict[str, Any], state: dict[str, Any],
                          source: ModelSource) -> None:
    """The adapter's recorded base must be this architecture, and every LoRA pair must
    target an existing weight of the model, with matching shapes."""
    recorded = adapter.config.get("base_model_name_or_path")
    base_config = Path(recorded) / "config.json" if isinstance(recorded, str) and recorded else None
    if base_config is not None and base_config.is_file():
        try:
            other = json.loads(base_config.read_text(encoding="utf-8"))
        except ValueError:
            other = {}
        keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size", "vocab_size")
        diffs = [f"{k} {other.get(k)!r} vs {source.config.get(k)!r}" for k in keys
                 if k in other and other.get(k) != source.config.get(k)]
        if diffs:
            raise DeployError(
                f"adapter {adapter.path} does not match model {source.path}: it was trained on "
                f"{recorded}, which differs ({'; '.join(diffs)}) (was it trained on another base model?)"
            )
    for base, (a, b) in tensors.items():
        weight = state.get(base)
        if weight is None:
            raise DeployError(
                f"adapter {adapter.path} does not match model {source.path}: it adapts {base}, "
                f"which the {source.model_type} model does not have"
            )
        out_dim, in_dim = weight.shape
        if a.shape[1] != in_dim or b.shape[0] != out_dim or a.shape[0] != b.shape[1]:
            raise DeployError(
                f"adapter {adapter.path} does not match model {source.path}: {base} is "
                f"{out_dim}x{in_dim} but the adapter's B·A is {b.shape[0]}x{a.shape[1]} "
                "(was it trained on another base model?)"
            )
