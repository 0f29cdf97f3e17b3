"""What is exported: a model folder (Hugging Face files, or one ``.gguf`` file) and an
optional PEFT LoRA adapter, with the checks that turn bad input into clear errors.

Reading configs is cheap; torch, transformers and peft are imported inside the
functions that load weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.interfaces import DeployError

#: ``model_type`` values Transformers.js runs as decoder-only models with this export.
ARCHITECTURES = ("llama", "qwen2")


@frozen
class ModelSource:
    """A model folder: its path, its config, and the GGUF file in it when it has no config.json."""

    path: Path
    config: dict[str, Any]
    gguf_file: str | None = None

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type") or "?")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeployError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DeployError(f"{path} does not hold a JSON object")
    return data


def resolve_model(path: str | Path) -> ModelSource:
    """The model in ``path``; refuses a missing folder or one holding no model."""
    folder = Path(path)
    if not folder.is_dir():
        raise DeployError(f"--model {folder} is not a folder")
    if (folder / "config.json").exists():
        return ModelSource(path=folder, config=_read_json(folder / "config.json"))
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) != 1:
        raise DeployError(
            f"--model {folder} holds no config.json and {len(ggufs)} .gguf files; "
            "expected a Hugging Face model folder or a folder with exactly one .gguf file"
        )
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, gguf_file=ggufs[0].name).to_dict()
    return ModelSource(path=folder, config=config, gguf_file=ggufs[0].name)


def check_architecture(source: ModelSource) -> None:
    """Refuse model types this exporter and Transformers.js do not both handle."""
    if source.model_type not in ARCHITECTURES:
        raise DeployError(
            f"the transformersjs deployer supports the {', '.join(ARCHITECTURES)} architectures; "
            f"{source.path} is a {source.model_type!r} model"
        )


def adapter_config(adapter: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` of a PEFT LoRA adapter folder (checked)."""
    folder = Path(adapter)
    if not folder.is_dir():
        raise DeployError(f"--adapter {folder} is not a folder")
    path = folder / "adapter_config.json"
    if not path.exists():
        raise DeployError(f"--adapter {folder} is not a PEFT adapter (no adapter_config.json)")
    config = _read_json(path)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise DeployError(f"--adapter {folder} is a {config.get('peft_type')!r} adapter; only LoRA is supported")
    return config


#: config fields that must agree between the adapter's recorded base and ``--model``.
_BASE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def check_adapter_base(adapter: str | Path, config: dict[str, Any], source: ModelSource) -> None:
    """When the adapter's recorded base (``base_model_name_or_path``) is a local model folder,
    its architecture and sizes must be those of ``--model``.

    LoRA shapes alone cannot tell a Llama from a Qwen2 of the same sizes.
    """
    recorded = config.get("base_model_name_or_path")
    if not recorded or not (Path(recorded) / "config.json").is_file():
        return
    try:
        base = json.loads((Path(recorded) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    for key in _BASE_FIELDS:
        if key in base and key in source.config and base[key] != source.config[key]:
            raise DeployError(
                f"adapter {adapter} does not fit model: it was trained on {recorded} "
                f"({key} {base[key]!r}) but --model {source.path} has {key} {source.config[key]!r}"
            )


def _adapter_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    weights = folder / "adapter_model.safetensors"
    if weights.exists():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    weights = folder / "adapter_model.bin"
    if weights.exists():
        import torch  # noqa: TID251 - lazy import

        state = torch.load(weights, map_location="cpu", weights_only=True)
        return {key: tuple(value.shape) for key, value in state.items()}
    raise DeployError(f"--adapter {folder} has no adapter_model.safetensors")


def check_adapter_fits(adapter: str | Path, model: Any) -> None:
    """Every LoRA matrix of ``adapter`` must sit on a module of ``model`` with matching shapes.

    :raises DeployError: naming the first module that is missing or has other shapes.
    """
    folder = Path(adapter)
    shapes = _adapter_shapes(folder)
    modules = dict(model.named_modules())
    checked = 0
    for key, shape in sorted(shapes.items()):
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            name = key.split(part)[0].removeprefix("base_model.model.")
            module = modules.get(name)
            if module is None:
                raise DeployError(
                    f"adapter {folder} does not fit model: it has weights for {name!r}, "
                    "which the model does not have (was it trained on another base?)"
                )
            expected = module.in_features if dim == 1 else module.out_features
            if len(shape) != 2 or shape[dim] != expected:
                side = "input" if dim == 1 else "output"
                raise DeployError(
                    f"adapter {folder} does not fit model: {name} has {side} size {expected} "
                    f"in the model but {shape[dim] if len(shape) == 2 else shape} in the adapter "
                    "(was it trained on another base?)"
                )
            checked += 1
    if checked == 0:
        raise DeployError(f"adapter {folder} holds no LoRA weights")


def load_tokenizer(source: ModelSource, adapter: str | Path | None) -> Any:
    """The tokenizer the model was trained with: the adapter's own copy when it has one.

    A folder with ``tokenizer.json`` is loaded as :class:`PreTrainedTokenizerFast`,
    exactly as that file says (``AutoTokenizer`` rebuilds some model types'
    tokenizers with other ids, and Transformers.js reads ``tokenizer.json``).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    for folder in ([Path(adapter)] if adapter else []) + [source.path]:
        if (folder / "tokenizer.json").exists():
            tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
            if not tokenizer.chat_template and (folder / "tokenizer_config.json").exists():
                tokenizer.chat_template = _read_json(folder / "tokenizer_config.json").get("chat_template")
            break
    else:
        if source.gguf_file is None:
            raise DeployError(f"--model {source.path} has no tokenizer.json")
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    if not tokenizer.chat_template:
        raise DeployError(f"the tokenizer of {source.path} has no chat template")
    return tokenizer


def load_merged_model(source: ModelSource, adapter: str | Path | None) -> Any:
    """The float32 model, with ``adapter`` merged into it when given (checked first)."""
    import torch  # noqa: TID251 - lazy import
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32, "attn_implementation": "eager"}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot load the model in {source.path}: {exc}") from None
    if source.gguf_file:  # de-quantised on load; drop the marker that blocks merging and export
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if adapter:
        adapter_config(adapter)
        check_adapter_fits(adapter, model)
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DeployError(f"adapter {adapter} does not fit the model in {source.path}: {exc}") from None
    model.config.use_cache = True
    return model.eval()
