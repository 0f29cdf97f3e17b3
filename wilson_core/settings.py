"""Settings shared by the commands: ``[tool.wilson.*]`` tables and ``KEY=VALUE`` options."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wilson_core.errors import WilsonError


def pyproject_table(name: str, directory: Path | None = None,
                    error: type[WilsonError] = WilsonError) -> dict[str, Any]:
    """The ``[tool.wilson.NAME]`` table of ``pyproject.toml`` in ``directory`` (default: the
    current folder); empty when there is no such file or table.

    :raises error: the file cannot be read or the entry is not a table.
    """
    return tool_table((directory or Path.cwd()) / "pyproject.toml", name, error)


def tool_table(path: Path, name: str, error: type[Exception] = WilsonError) -> dict[str, Any]:
    """The ``[tool.wilson.NAME]`` table of the TOML file ``path``; empty when there is no such
    file or table.

    :raises error: the file cannot be read or the entry is not a table.
    """
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    section = data.get("tool", {}).get("wilson", {}).get(name, {})
    if not isinstance(section, dict):
        raise error(f"{path}: [tool.wilson.{name}] must be a table")
    return section


def option_key(key: str) -> str:
    """``max-tokens`` and ``max_tokens`` name the same setting."""
    return key.strip().replace("-", "_")


def parse_key_values(values: Iterable[str], *, flag: str = "--option",
                     error: type[WilsonError] = WilsonError,
                     normalise: bool = True) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict; a VALUE that parses as JSON is taken as JSON.

    :raises error: an item without ``=`` or without a key.
    """
    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise error(f"{flag} must be KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options[option_key(key) if normalise else key.strip()] = value
    return options
