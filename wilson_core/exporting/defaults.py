"""Export settings shared by every path that exports (``wilson export``, the dashboard's buttons).

``redact`` is read from ``[tool.wilson.export]``: in ``./pyproject.toml`` first, then in
the ``pyproject.toml`` beside the database (so a project folder holding its database
carries the setting with it, wherever the command runs).  A command-line flag wins
over both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import frozen


@frozen
class RedactionSetting:
    """Whether exports redact by default, and where that was decided (for people)."""

    enabled: bool
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "source": self.source}


def _folders(db_path: str | Path | None) -> list[Path]:
    folders = [Path.cwd()]
    if db_path and "://" not in str(db_path):
        beside = Path(db_path).expanduser().resolve().parent
        if beside != folders[0].resolve():
            folders.append(beside)
    return folders


def export_defaults(db_path: str | Path | None) -> tuple[dict[str, Any], Path | None]:
    """``[tool.wilson.export]`` (keys normalised) from the first pyproject.toml that has the table."""
    from wilson_core.settings import option_key, pyproject_table

    for folder in _folders(db_path):
        table = pyproject_table("export", folder)
        if table:
            return {option_key(k): v for k, v in table.items()}, folder / "pyproject.toml"
    return {}, None


def redaction_setting(db_path: str | Path | None) -> RedactionSetting:
    """The default of ``redact`` for exports of the database at ``db_path``."""
    from wilson_core.errors import WilsonError

    try:
        table, path = export_defaults(db_path)
    except WilsonError as exc:
        return RedactionSetting(False, f"off ({exc})")
    if path is not None and "redact" in table:
        return RedactionSetting(bool(table["redact"]), f"[tool.wilson.export] redact in {path}")
    return RedactionSetting(False, "off by default (set redact = true in [tool.wilson.export])")
