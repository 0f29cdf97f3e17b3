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
    import os
    from pathlib import Path

    from wilson_core.errors import WilsonError
    from wilson_core.store import default_db_path, health, is_postgres_url
    from wilson_core.store.connections import check_database, open_connection
    from wilson_core.store.migrating import migration_names

    location = os.fspath(path) if path else os.environ.get("WILSON_DB") or None
    if location is not None and is_postgres_url(location):
        return diagnose_postgres(location)
    report: dict[str, Any] = {"database": str(path or default_db_path()), "backend": "sqlite",
                              "problems": [], "checks": {}}
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
        _schema(checks, problems, health.applied_migrations(conn), list(migration_names()))
        _contents(checks, problems, conn, health.orphans(conn))
    finally:
        conn.close()
    _spool(checks, problems, db_path)
    return report


def diagnose_postgres(url: str) -> dict[str, Any]:
    """Every check on the PostgreSQL store at ``url``: the server can be reached, the schema, the
    role's privileges, counts, orphans, and the captures spooled for it (nothing is migrated)."""
    from wilson_core.errors import WilsonError
    from wilson_core.store import health
    from wilson_core.store.postgres import Connection, redact

    where = redact(url)
    report: dict[str, Any] = {"database": where, "backend": "postgresql", "problems": [], "checks": {}}
    problems: list[str] = report["problems"]
    checks: dict[str, Any] = report["checks"]
    try:
        conn = Connection(url)
    except WilsonError as exc:  # no psycopg, or the server cannot be reached
        checks["connected"] = False
        problems.append(str(exc))
        _spool(checks, problems, where)
        return report
    import psycopg

    checks["connected"] = True
    try:
        checks["server"] = health.postgres_server(conn)
        if not health.postgres_has_schema(conn):
            problems.append(f"no Wilson database at {where} (no wilson_migrations table): "
                            "a capture or a writing command creates it")
        else:
            _postgres_store(checks, problems, conn, psycopg.Error)
    except psycopg.Error as exc:
        problems.append(f"cannot read {where}: {_first_line(exc)}")
    finally:
        conn.close()
    _spool(checks, problems, where)
    return report


def _postgres_store(checks: dict[str, Any], problems: list[str], conn: Any, errors: type[BaseException]) -> None:
    from wilson_core.store import health, pg_schema

    privileges = health.postgres_privileges(conn)
    checks["privileges"] = privileges
    try:
        applied = health.postgres_applied_migrations(conn)
    except errors as exc:
        problems.append(f"cannot read the schema version: {_first_line(exc)}")
        return
    _schema(checks, problems, applied, pg_schema.names())
    if "INSERT" not in privileges.get("interactions", []):
        problems.append(f"role {checks['server']['user']!r} cannot capture (no INSERT on interactions)")
    unreadable = [t for t in health.TABLES if t in privileges and "SELECT" not in privileges[t]]
    if unreadable:  # a capture-only role (docs/capture.md): fine for an app server
        checks["reading"] = (f"role {checks['server']['user']!r} cannot read {', '.join(unreadable)}: "
                             "counts and orphan checks need a role that can")
        return
    _contents(checks, problems, conn, health.orphans(conn, errors=(errors,)))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _schema(checks: dict[str, Any], problems: list[str], applied: list[str], known: list[str]) -> None:
    pending = [name for name in known if name not in applied]
    unknown = [name for name in applied if name not in known]
    checks["schema"] = {"applied": len(applied), "pending": pending, "unknown": unknown}
    if pending:
        problems.append(f"schema is behind: {len(pending)} migration(s) pending ({pending[0]}...); "
                        "any writing command brings it up to date")
    if unknown:
        problems.append(f"schema was made by a newer Wilson ({unknown[0]}...)")


def _contents(checks: dict[str, Any], problems: list[str], conn: Any, orphans: dict[str, int]) -> None:
    """Row counts, capture counters and orphaned rows (the same SQL on both backends)."""
    from wilson_core.store import health

    checks["rows"] = health.row_counts(conn)
    counters = health.counters(conn)
    checks["capture_counters"] = counters
    for name, what in (("dropped", "captures were lost (no database, spool or memory could keep them)"),
                       ("spool_unreadable", "spooled lines could not be read"),
                       ("sink_failures", "failures of other capture sinks")):
        if counters.get(name):
            problems.append(f"{counters[name]} {what}")
    checks["orphans"] = orphans
    for name, count in orphans.items():
        if count:
            problems.append(f"{count} {name}")


def _spool(checks: dict[str, Any], problems: list[str], db_path: Any) -> None:
    """The captures waiting in the spool for ``db_path`` (a file path, or a server URL without password)."""
    from wilson_core.store import spool
    from wilson_core.store.sink import capture_state

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
    checks["memory_queue"] = capture_state()  # this process's: other processes keep their own


@click.command("doctor")
@json_option
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the database (integrity, schema, orphaned rows, counts; on PostgreSQL the server and
    the role's privileges) and its spool; exit 3 on problems."""
    report = diagnose(db_option_path(ctx))
    if as_json:
        echo_json(report)
    else:
        click.secho(report["database"], bold=True)
        checks = report["checks"]
        if "server" in checks:
            server = checks["server"]
            click.echo(f"server: PostgreSQL {server['version']}, role {server['user']}, database {server['database']}")
        elif checks.get("connected") is False:
            click.echo("server: cannot connect")
        if "integrity_check" in checks:
            click.echo(f"integrity_check: {'ok' if checks['integrity_check'] == 'ok' else 'FAILED'}")
        if "schema" in checks:
            schema = checks["schema"]
            click.echo(f"schema: {schema['applied']} migrations applied, {len(schema['pending'])} pending")
        if "privileges" in checks:
            granted = {table: "/".join(p) or "none" for table, p in checks["privileges"].items()}
            if len(set(granted.values())) == 1:
                click.echo(f"privileges: {next(iter(granted.values()))} on every Wilson table")
            else:
                click.echo("privileges: " + ", ".join(f"{table} {p}" for table, p in granted.items()))
        if "reading" in checks:
            click.echo(checks["reading"])
        if "rows" in checks:
            click.echo("rows: " + ", ".join(f"{table} {count}" for table, count in checks["rows"].items()))
        if "capture_counters" in checks:
            counters = checks["capture_counters"]
            click.echo("capture counters: " + (", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none"))
        if "spool" in checks:
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
