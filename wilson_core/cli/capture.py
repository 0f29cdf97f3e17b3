"""``wilson runs``, ``wilson show``, ``wilson stats``: look at what was captured."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_db, resolving_ids, table


def register(cli: click.Group) -> None:
    cli.add_command(runs_command)
    cli.add_command(show_command)
    cli.add_command(stats_command)


@click.command("runs")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@json_option
@click.pass_context
def runs_command(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List recent runs with their number of calls and tokens."""
    store = open_db(ctx)
    from wilson_core.store import summary

    rows = summary.recent_runs(store.connection(), limit)
    if as_json:
        echo_json(rows)
    else:
        from wilson_core.store.listing import short_ids

        shorts = short_ids(store, [row["id"] for row in rows])  # any unique prefix works in every command
        rows = [{**row, "id": shorts[row["id"]]} for row in rows]
        click.echo(table(rows, ["id", "call_type", "started_at", "calls", "errors", "tokens"]))


@click.command("show")
@click.argument("id")
@json_option
@click.pass_context
@resolving_ids(id=("interaction", "run"))
def show_command(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one interaction in full, or every call of a run given its id (--json: a list)."""
    from wilson_core import converter
    from wilson_core.errors import NotFound

    store = open_db(ctx)
    is_run = False
    try:
        interactions = [store.get_interaction(id)]
    except NotFound:
        is_run = True
        interactions = store.run_interactions(id)
        if not interactions:
            raise NotFound(f"no interaction or run with id {id!r} in {store.path}") from None
    data = []
    for interaction in interactions:
        item = converter.unstructure(interaction)
        item["tool_results"] = converter.unstructure(store.tool_results(interaction.id))
        data.append(item)
    if as_json:
        echo_json(data if is_run else data[0])  # a run is always a list, even of one call
        return
    for item in data:
        click.secho(
            f"interaction {item['id']}  run {item['run_id']} #{item['sequence_num']}  "
            f"{item['call_type']}  {item['provider']}:{item['model']}  {item['status']}",
            bold=True,
        )
        click.echo(
            f"tokens in/out {item['input_tokens']}/{item['output_tokens']}  "
            f"{item['duration_ms']:.1f} ms  {item['created_at']}"
        )
        if item["error"]:
            click.secho(f"error: {item['error']}", fg="red")
        for message in item["messages"]:
            click.secho(f"[{message.get('role')}]", fg="cyan")
            if message.get("content"):
                click.echo(str(message["content"]))
            for call in message.get("tool_calls") or []:
                click.echo(f"  -> {call['function']['name']}({call['function'].get('arguments')})")
        click.secho("[response]", fg="green")
        click.echo(item["response_content"] or "")
        for call in item["tool_calls"]:
            click.echo(f"  -> tool call {call['id']}: {call['name']}({call['arguments']})")
        for result in item["tool_results"]:
            flag = " (error)" if result["is_error"] else ""
            click.echo(f"  <- {result['name']} [{result['tool_call_id']}]{flag}: {result['content']}")
        click.echo()


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def collect_stats(store) -> dict:
    """Counts by call type, model and status; tokens; latency percentiles; capture health."""
    from wilson_core import shadowing
    from wilson_core.store import spool, summary

    conn = store.connection()

    def grouped(column: str) -> dict:
        return summary.grouped_counts(conn, column)

    totals = summary.token_totals(conn)
    durations = summary.durations(conn)
    counters = store.counters()
    return {
        "database": str(store.path),
        "interactions": totals[0],
        "runs": store.count("runs"),
        "tool_results": store.count("tool_results"),
        "by_call_type": grouped("call_type"),
        "by_model": grouped("model"),
        "by_provider": grouped("provider"),
        "by_status": grouped("status"),
        "tokens": {"input": totals[1] or 0, "output": totals[2] or 0, "total": totals[3] or 0},
        "latency_ms": {
            "p50": _percentile(durations, 0.50),
            "p90": _percentile(durations, 0.90),
            "p99": _percentile(durations, 0.99),
            "max": durations[-1] if durations else None,
        },
        "capture": {
            "spooled": counters.get("spooled", 0),
            "replayed": counters.get("replayed", 0),
            "spooled_pending": spool.pending(store.path),
            "spool_unreadable": counters.get("spool_unreadable", 0),
            "sink_failures": counters.get("sink_failures", 0),
            # records the database refused even after cleaning, kept in *.quarantine.jsonl
            "quarantined": sum(count for _, count in spool.quarantined(store.path)),
            # records neither the database, the spool nor the in-memory queue could keep
            "dropped": counters.get("dropped", 0),
        },
        # local models' shadow answers (wilson proxy shadow routes) against the upstream answers
        "shadow": shadowing.agreement(store),
    }


@click.command("stats")
@json_option
@click.pass_context
def stats_command(ctx: click.Context, as_json: bool) -> None:
    """Counts by call type, model and status; tokens; latency; capture health."""
    data = collect_stats(open_db(ctx))
    if as_json:
        echo_json(data)
        return
    click.secho(f"{data['database']}", bold=True)
    click.echo(f"interactions {data['interactions']}   runs {data['runs']}   tool results {data['tool_results']}")
    for key in ("by_call_type", "by_model", "by_provider", "by_status"):
        parts = ", ".join(f"{k or '-'}: {v}" for k, v in data[key].items()) or "-"
        click.echo(f"{key.replace('by_', 'by ').replace('_', ' ')}: {parts}")
    t = data["tokens"]
    click.echo(f"tokens: input {t['input']}, output {t['output']}, total {t['total']}")
    lat = data["latency_ms"]
    if lat["p50"] is not None:
        click.echo(f"latency ms: p50 {lat['p50']:.1f}, p90 {lat['p90']:.1f}, p99 {lat['p99']:.1f}, max {lat['max']:.1f}")
    click.echo(capture_health_line(data["capture"]))
    if data["shadow"]:
        from wilson_core.shadowing import agreement_line

        click.echo("shadow agreement by call type (local vs upstream answer to the same context):")
        for call_type, row in data["shadow"].items():
            click.echo(agreement_line(call_type, row))


def capture_health_line(cap: dict) -> str:
    """One line on capture health: "ok" when nothing was spooled, lost or failed."""
    if not any(cap.values()):
        return "capture: ok (every call written directly; nothing spooled, no sink failures)"
    parts = []
    if cap["spooled"] or cap["replayed"]:
        parts.append(f"{cap['spooled']} calls spooled while the database was busy or unavailable, "
                     f"{cap['replayed']} replayed")
    if cap["spooled_pending"]:
        parts.append(f"{cap['spooled_pending']} waiting for replay")
    if cap["spool_unreadable"]:
        parts.append(f"{cap['spool_unreadable']} unreadable spool lines (kept beside the database)")
    if cap["sink_failures"]:
        parts.append(f"{cap['sink_failures']} failures of other sinks")
    if cap.get("quarantined"):
        parts.append(f"{cap['quarantined']} records the database refused (kept in the quarantine file)")
    if cap.get("dropped"):
        parts.append(f"{cap['dropped']} LOST: dropped when no database, spool or memory could keep them")
    return "capture: " + ", ".join(parts)
