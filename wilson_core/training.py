"""Cheap checks and configuration for ``wilson train`` (no torch, no transformers).

Everything here runs before a trainer imports a heavy library, so a wrong data
file, an empty file, a missing base model or a base without a chat template is
refused in well under a second with a message that says what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .converter import structure
from .errors import RecordError
from .interfaces import TRAIN_FORMATS, TrainConfig, TrainError

#: fields of :class:`TrainConfig` a user may set in pyproject.toml or with flags.
SETTABLE = tuple(
    f.name for f in attrs.fields(TrainConfig) if f.name not in ("trainer", "options")
)


def _guess_format(keys: set[str]) -> str | None:
    for name, required in TRAIN_FORMATS.items():
        if set(required) <= keys:
            return name
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    return None


def check_data(path: str | os.PathLike[str], data_format: str, trainer: str, flag: str = "--data") -> int:
    """Check that ``path`` is a non-empty JSONL file of ``data_format``; return its example count.

    :raises TrainError: the file is missing, empty, not JSONL, or of another format
        (the message names the expected keys and the format the file looks like).
    """
    required = TRAIN_FORMATS[data_format]
    file = Path(path)
    if not file.exists():
        raise TrainError(f"{flag} {file}: no such file")
    if not file.is_file():
        raise TrainError(f"{flag} {file}: not a file")
    count = 0
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{file}:{number}: not valid JSON ({exc.msg}); expected one object per line") from None
            if not isinstance(row, dict):
                raise TrainError(f"{file}:{number}: expected a JSON object, got {type(row).__name__}")
            missing = [key for key in required if key not in row]
            if missing:
                guess = _guess_format(set(row))
                looks = f"; this looks like a {guess} file" if guess and guess != data_format else ""
                raise TrainError(
                    f"{file}:{number}: {trainer} reads the {data_format} format with keys "
                    f"{', '.join(required)} on every line, but this line has "
                    f"{', '.join(sorted(row)) or 'no keys'}{looks} "
                    f"(write one with 'wilson export {data_format}')"
                )
            _check_row(row, data_format, file, number)
            count += 1
    if count == 0:
        raise TrainError(f"{flag} {file}: the file has no examples")
    return count


def _check_row(row: Mapping[str, Any], data_format: str, file: Path, number: int) -> None:
    where = f"{file}:{number}"
    if data_format == "sft":
        messages = row["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise TrainError(f"{where}: 'messages' must be a list of {{'role', 'content'}} objects")
        if not any(m["role"] == "assistant" for m in messages):
            raise TrainError(f"{where}: the conversation has no assistant message to learn from")
    elif data_format == "kto" and not isinstance(row["label"], bool):
        raise TrainError(f"{where}: 'label' must be true or false, got {row['label']!r}")
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, (list, str)):
        raise TrainError(f"{where}: 'tools' must be a list of JSON schemas")


def looks_like_path(name: str) -> bool:
    """``True`` for ``./x``, ``/x``, ``~/x``, ``x.gguf``, ``a/b/c`` or an existing path;
    ``False`` for a Hugging Face id such as ``Qwen/Qwen2.5-0.5B-Instruct``."""
    if not name:
        return True
    if name.startswith((".", "/", "~")) or name.endswith(".gguf") or os.sep + os.sep in name:
        return True
    return Path(name).exists() or name.count("/") > 1 or "\\" in name


def check_base_folder(base: str) -> Path:
    """Check a local base model (folder or ``.gguf`` file): it exists and has a chat template."""
    path = Path(base).expanduser()
    if not path.exists():
        raise TrainError(f"--base {base}: no such model folder or file")
    if path.is_file():
        if path.suffix != ".gguf":
            raise TrainError(f"--base {base}: a file base model must be a .gguf file")
        return path
    if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
        raise TrainError(f"--base {base}: not a model folder (no config.json)")
    if not has_chat_template(path):
        raise TrainError(
            f"--base {base}: the tokenizer has no chat template, so conversations cannot be "
            "rendered; add one (tokenizer_config.json 'chat_template' or chat_template.jinja)"
        )
    return path


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    config = folder / "tokenizer_config.json"
    if config.exists():
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except (json.JSONDecodeError, OSError):
            return False
    return bool(list(folder.glob("*.gguf")))  # GGUF files carry their template inside


def manifest_for(data: str | os.PathLike[str]) -> Path | None:
    """The export manifest written beside ``data`` (``DATA.manifest.json`` or ``DATA.jsonl.manifest.json``)."""
    file = Path(data)
    for candidate in (file.with_name(file.name + ".manifest.json"), file.with_suffix(".manifest.json")):
        if candidate.exists():
            return candidate
    return None


def pyproject_settings(trainer: str, start: Path | None = None) -> dict[str, Any]:
    """``[tool.wilson.train]`` (and ``[tool.wilson.train.TRAINER]`` over it) from ./pyproject.toml."""
    from wilson_core.settings import pyproject_table

    section = pyproject_table("train", start, error=TrainError)
    settings = {k.replace("-", "_"): v for k, v in section.items() if not isinstance(v, dict)}
    specific = section.get(trainer)
    if isinstance(specific, dict):
        settings.update({k.replace("-", "_"): v for k, v in specific.items()})
    return settings


def build_config(trainer: str, file_settings: Mapping[str, Any], flags: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig`: defaults, then pyproject settings, then CLI flags (not ``None``).

    Keys that are not fields of :class:`TrainConfig` go to ``options`` (trainer-specific).
    """
    data: dict[str, Any] = {"trainer": trainer}
    options: dict[str, Any] = {}
    for source in (file_settings, {k: v for k, v in flags.items() if v is not None}):
        for key, value in source.items():
            if key == "options" and isinstance(value, Mapping):
                options.update(value)
            elif key in SETTABLE:
                data[key] = value
            else:
                options[key] = value
    if isinstance(data.get("target_modules"), str):
        data["target_modules"] = [m.strip() for m in data["target_modules"].split(",") if m.strip()]
    data["options"] = options
    for required in ("data", "base", "out"):
        if not data.get(required):
            raise TrainError(f"missing --{required} (or '{required}' in [tool.wilson.train])")
    try:
        return structure(data, TrainConfig)
    except RecordError as exc:
        raise TrainError(f"bad training settings: {exc}") from None
