"""``wilson logs``: the captured interactions, newest first (as ``llm logs`` lists prompts)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_db, table


def register(cli: click.Group) -> None:
    cli.add_command(logs_command)


@click.command("logs")
@click.option("-n", "--count", "count", type=int, default=20, show_default=True,
              help="How many interactions (0: all).")
@click.option("-m", "--model", "models", multiple=True, help="Only this model (repeatable).")
@click.option("-t", "--call-type", "call_types", multiple=True, help="Only this call type (repeatable).")
@click.option("-p", "--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["ok", "error"]),
              help="Only calls with this status.")
@click.option("--rating-min", type=click.IntRange(1, 5), help="Only rated at least this many stars.")
@click.option("--rating-max", type=click.IntRange(1, 5), help="Only rated at most this many stars.")
@click.option("--unrated", is_flag=True, help="Only calls without a rating.")
@click.option("--tag", "tags", multiple=True, help="Only calls labelled with this tag (repeatable: all of them).")
@click.option("-r", "--run", "run_id", help="Only this run (full id or a unique prefix).")
@click.option("--since", help="From this time on: 2026-12-03, 2026-12-03T14:00, ...+01:00, or an age (2h, 7d).")
@click.option("--until", help="Before this time (same forms as --since).")
@click.option("-q", "--query", help="Full-text search: every word in the prompt, response or tool calls.")
@click.option("--full-ids", is_flag=True, help="Show full ids in the table.")
@json_option
@click.pass_context
def logs_command(
    ctx: click.Context,
    count: int,
    models: tuple[str, ...],
    call_types: tuple[str, ...],
    providers: tuple[str, ...],
    statuses: tuple[str, ...],
    rating_min: int | None,
    rating_max: int | None,
    unrated: bool,
    tags: tuple[str, ...],
    run_id: str | None,
    since: str | None,
    until: str | None,
    query: str | None,
    full_ids: bool,
    as_json: bool,
) -> None:
    """List captured interactions, newest first.

    Ids in the table are short: any unique prefix of 6 or more characters
    names an interaction in every command (wilson show 3f9a1c,
    wilson annotate rate 3f9a1c 5).
    """
    from wilson_core.errors import WilsonError
    from wilson_core.store.listing import LogFilter, list_interactions, parse_when, resolve_id

    if unrated and (rating_min is not None or rating_max is not None):
        raise WilsonError("--unrated cannot be combined with --rating-min / --rating-max")
    store = open_db(ctx)
    options = LogFilter(
        models=models, call_types=call_types, providers=providers, statuses=statuses, tags=tags,
        run_id=resolve_id(store, run_id, "run") if run_id else None,
        rating_min=rating_min, rating_max=rating_max, unrated=unrated,
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        query=query, limit=count,
    )
    rows = list_interactions(store, options)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        if not full_ids:
            row["id"] = row["short_id"]
            row["run_id"] = row["short_run_id"]
        row["model"] = f"{row['provider']}:{row['model']}"
        row["created_at"] = (row["created_at"] or "")[:19].replace("T", " ")
        text = row["response_content"] or ""
        if row["tool_calls"]:
            text = (text + " " if text else "") + "-> " + ", ".join(map(str, row["tool_calls"]))
        if row["status"] != "ok":
            text = f"[{row['status']}] {row['error'] or ''}"
        row["prompt"] = _clip(row["user_prompt"], 40)
        row["response"] = _clip(text, 40)
        row["rating"] = "*" * row["rating"] if row["rating"] else ""
        row["tags"] = ",".join(row["tags"])
        row["run"] = row["run_id"]
    click.echo(table(rows, ["id", "created_at", "call_type", "model", "rating", "tags", "prompt",
                            "response", "run"]))


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."
