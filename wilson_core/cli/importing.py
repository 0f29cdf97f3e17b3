"""``wilson import wilson-db PATH``, ``wilson import openai-jsonl PATH``, ``wilson import llm-logs PATH``."""

from __future__ import annotations

from typing import Any

import click

from wilson_core.cli._common import echo_json, json_option, open_db


def register(cli: click.Group) -> None:
    cli.add_command(import_group)


@click.group("import")
def import_group() -> None:
    """Import existing LLM logs (idempotent: importing twice adds nothing).

    The whole file is checked first; if anything is wrong, nothing is written
    and every problem is listed (with line numbers or row ids).
    """


def _report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(data)
        return
    added, read = data["added"], data["read"]
    click.echo(f"imported from {data['source']}:")
    for key in ("runs", "interactions", "tool_results", "annotations", "pairs"):
        if read[key] or added[key]:
            already = read[key] - added[key]
            suffix = f" ({already} already present)" if already else ""
            click.echo(f"  {key.replace('_', ' ')}: {added[key]} new{suffix}")
    for reason, count in data["skipped"].items():
        click.echo(f"  skipped {count}: {reason}")


@import_group.command("wilson-db")
@click.argument("path", type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def import_wilson_db_command(ctx: click.Context, path: str, as_json: bool) -> None:
    """Import an Open Accountant Wilson data.db (interactions, tool results, annotations)."""
    from wilson_core.importers import write_batch
    from wilson_core.importers.wilson_db import read

    batch = read(path)  # checked in full before our database is opened (or created)
    _report(write_batch(open_db(ctx, create=True), batch), as_json)


@import_group.command("openai-jsonl")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--model", default="unknown", show_default=True,
              help="Model name for lines that do not say.")
@click.option("--call-type", default="agent", show_default=True,
              help="Call type for lines that do not say.")
@json_option
@click.pass_context
def import_openai_jsonl_command(
    ctx: click.Context, path: str, model: str, call_type: str, as_json: bool
) -> None:
    """Import OpenAI chat-format JSONL ({"messages": [...], "tools": [...]} per line)."""
    from wilson_core.importers import write_batch
    from wilson_core.importers.openai_jsonl import read

    batch = read(path, model=model, call_type=call_type)
    _report(write_batch(open_db(ctx, create=True), batch), as_json)


@import_group.command("llm-logs")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--call-type", default="chat", show_default=True, help="Call type of the imported calls.")
@json_option
@click.pass_context
def import_llm_logs_command(ctx: click.Context, path: str, call_type: str, as_json: bool) -> None:
    """Import simonw/llm's logs.db (see `llm logs path`): prompts, system prompts, responses,
    tool calls and results, tokens, durations; each conversation becomes a run."""
    from wilson_core.importers import write_batch
    from wilson_core.importers.llm_logs import read

    batch = read(path, call_type=call_type)  # read in full (read-only) before our database is opened
    _report(write_batch(open_db(ctx, create=True), batch), as_json)
