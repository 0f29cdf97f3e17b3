"""``wilson doctor``: check one database and the captures waiting for it; exit 3 on any problem."""

from __future__ import annotations

from typing import Any

import click

from wilson_core.errors import WilsonError

from ._common import db_option_path, echo_json, json_option

#: exit code when problems were found (1 stays "the command could not run").
EXIT_PROBLEMS = 3


class ProblemsFound(WilsonError):
    exit_code = EXIT_PROBLEMS


def register(cli: click.Group) -> None:
    cli.add_command(doctor_command)


def diagnose(path: Any) -> dict[str, Any]:
    """Every check on the database at ``path`` (read-only: nothing is replayed or migrated)."""
    from pathlib import Path

    from wilson_core.errors import WilsonError
    from wilson_core.store import default_db_path, health, spool
    from wilson_core.store.connections import check_database, open_connection
    from wilson_core.store.migrating import migration_names

    report: dict[str, Any] = {"database": str(path or default_db_path()), "problems": [], "checks": {}}
    problems: list[str] = report["problems"]
    checks: dict[str, Any] = report["checks"]
    try:
        db_path = Path(path).expanduser() if path else default_db_path()
        state = check_database(db_path, create=False)
    except WilsonError as exc:
        problems.append(str(exc))
        return report
    checks["writable"] = state != "read-only"
    conn = open_connection(db_path, read_only=True)
    try:
        errors = health.integrity(conn)
        checks["integrity_check"] = errors or "ok"
        if errors:
            problems.append(f"integrity_check found {len(errors)} problem(s): {errors[0]}")
        applied = health.applied_migrations(conn)
        known = list(migration_names())
        pending = [name for name in known if name not in applied]
        unknown = [name for name in applied if name not in known]
        checks["schema"] = {"applied": len(applied), "pending": pending, "unknown": unknown}
        if pending:
            problems.append(f"schema is behind: {len(pending)} migration(s) pending ({pending[0]}...); "
                            "any writing command brings it up to date")
        if unknown:
            problems.append(f"schema was made by a newer Wilson ({unknown[0]}...)")
        counters = health.counters(conn)
        checks["capture_counters"] = counters
        for name, what in (("dropped", "captures were lost (no database, spool or memory could keep them)"),
                           ("spool_unreadable", "spooled lines could not be read"),
                           ("sink_failures", "failures of other capture sinks")):
            if counters.get(name):
                problems.append(f"{counters[name]} {what}")
        orphans = health.orphans(conn)
        checks["orphans"] = orphans
        for name, count in orphans.items():
            if count:
                problems.append(f"{count} {name}")
    finally:
        conn.close()
    waiting = spool.pending(db_path)
    quarantined = spool.quarantined(db_path)
    leftovers = spool.leftovers(db_path)
    checks["spool"] = {
        "locations": [str(p) for p in spool.spool_paths(db_path)],
        "waiting": waiting,
        "quarantined": {str(p): n for p, n in quarantined},
        "unreadable_files": [str(p) for p in leftovers["unreadable"]],
        "stale_replays": [str(p) for p in leftovers["stale"]],
    }
    if waiting:
        problems.append(f"{waiting} capture(s) wait in the spool (replayed when a capture or command "
                        "can write the database)")
    for qpath, count in quarantined:
        if count:
            problems.append(f"{count} capture(s) the database refused are kept in {qpath}")
    for upath in leftovers["unreadable"]:
        problems.append(f"unreadable spool lines kept in {upath}")
    from wilson_core.store.sink import capture_state

    checks["memory_queue"] = capture_state()  # this process's: other processes keep their own
    return report


@click.command("doctor")
@json_option
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the database (integrity, schema, orphaned rows) and its spool; exit 3 on problems."""
    report = diagnose(db_option_path(ctx))
    if as_json:
        echo_json(report)
    else:
        click.secho(report["database"], bold=True)
        checks = report["checks"]
        if "integrity_check" in checks:
            click.echo(f"integrity_check: {'ok' if checks['integrity_check'] == 'ok' else 'FAILED'}")
            schema = checks["schema"]
            click.echo(f"schema: {schema['applied']} migrations applied, {len(schema['pending'])} pending")
            counters = checks["capture_counters"]
            click.echo("capture counters: " + (", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none"))
            click.echo(f"spool: {checks['spool']['waiting']} waiting, "
                       f"{sum(checks['spool']['quarantined'].values())} quarantined")
        if report["problems"]:
            click.secho(f"{len(report['problems'])} problem(s):", fg="red")
            for problem in report["problems"]:
                click.echo(f"  - {problem}")
        else:
            click.secho("no problems found", fg="green")
    if report["problems"]:
        raise ProblemsFound(f"wilson doctor found {len(report['problems'])} problem(s) (exit code {EXIT_PROBLEMS})")
