"""Saving a model folder that every consumer reads (transformers, llama.cpp converters,
Transformers.js).

transformers 5 writes the chat template only to ``chat_template.jinja``, names the
tokenizer class ``TokenizersBackend`` and puts ``rope_theta`` inside
``rope_parameters``.  Older readers want the template inside
``tokenizer_config.json``, ``tokenizer_class: PreTrainedTokenizerFast`` and a
top-level ``rope_theta``; :func:`save_model_folder` writes both forms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def fix_saved_folder(out_dir: Path | str, chat_template: str | None = None) -> None:
    """Patch ``config.json`` and ``tokenizer_config.json`` in ``out_dir`` for older readers."""
    out = Path(out_dir)
    config_path = out / "config.json"
    if config_path.exists():
        config = _read_json(config_path)
        rope = config.get("rope_parameters") or {}
        if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
            config["rope_theta"] = rope["rope_theta"]
        _write_json(config_path, config)
    tok_config_path = out / "tokenizer_config.json"
    if tok_config_path.exists():
        tok_config = _read_json(tok_config_path)
        template_file = out / "chat_template.jinja"
        if chat_template is None and template_file.exists():
            chat_template = template_file.read_text(encoding="utf-8")
        if chat_template:
            tok_config["chat_template"] = chat_template
            if not template_file.exists():
                template_file.write_text(chat_template, encoding="utf-8")
        if tok_config.get("tokenizer_class") in (None, "TokenizersBackend"):
            tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        _write_json(tok_config_path, tok_config)


def save_model_folder(model: Any, tokenizer: Any, out_dir: Path | str) -> Path:
    """Save ``model`` (safetensors), its generation config and ``tokenizer`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    fix_saved_folder(out, getattr(tokenizer, "chat_template", None))
    return out
