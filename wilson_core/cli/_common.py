"""Small helpers shared by CLI commands."""

from __future__ import annotations

import json
from typing import Any

import click


def open_db(ctx: click.Context, *, create: bool = False) -> Any:
    """The store named by ``--db`` / ``$WILSON_DB`` / the default path."""
    from wilson_core.store import open_store

    root = ctx.find_root()
    return open_store((root.obj or {}).get("db"), create=create)


def db_option_path(ctx: click.Context) -> str | None:
    return (ctx.find_root().obj or {}).get("db")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        lines.append("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
