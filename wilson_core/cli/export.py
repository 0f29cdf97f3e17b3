"""``wilson export FORMAT --out PATH`` and ``wilson export validate PATH``.

Defaults come from ``[tool.wilson.export]`` in ``./pyproject.toml`` (keys are
the long option names, with ``-`` or ``_``); flags given on the command line
win.  Exit codes: 0 written, 1 error, 3 nothing matched the filters (an empty
file and a manifest saying 0 are still written).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from wilson_core.errors import WilsonError

from ._common import echo_json, open_db

#: ``wilson export`` exit code when the filters matched nothing.
EXIT_NOTHING_MATCHED = 3

#: pyproject keys that are lists (repeatable flags) and their parameter names.
_MULTI = {"call_type": "call_types", "model": "models", "provider": "providers", "tag": "tags"}
#: other pyproject keys whose parameter has another name.
_ALIASES = {**_MULTI, "option": "exporter_options", "options": "exporter_options"}


def register(cli: click.Group) -> None:
    cli.add_command(export_group)


def read_config(directory: Path | None = None) -> dict[str, Any]:
    """``[tool.wilson.export]`` from ``pyproject.toml`` in ``directory`` (the current one)."""
    from wilson_core.settings import option_key, pyproject_table

    return {option_key(key): value for key, value in pyproject_table("export", directory).items()}


class ExportGroup(click.Group):
    """``validate`` is a subcommand; any other name is an export format."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from wilson_core.interfaces import EXPORTERS
        from wilson_core.plugins import driver_names

        return [*driver_names(EXPORTERS), "validate"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "validate":
            return validate_command
        return _format_command(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from wilson_core.interfaces import EXPORTERS
        from wilson_core.plugins import driver_entry_points

        rows = [(info.name, f"{info.distribution} ({info.value})") for info in driver_entry_points(EXPORTERS)]
        rows.append(("validate", "Check an export against a tokenizer's chat template."))
        with formatter.section("Formats and commands"):
            formatter.write_dl(rows)


@click.group("export", cls=ExportGroup)
def export_group() -> None:
    """Write training data: wilson export FORMAT --out PATH [filters].

    FORMAT is an exporter name (sft, dpo, kto, openai-chat, or a plugin's).
    Defaults come from [tool.wilson.export] in ./pyproject.toml; flags win.
    Exit code 3 when the filters matched nothing.
    """


def _format_command(name: str) -> click.Command:
    @click.command(name)
    @click.option("--out", "-o", "out", type=click.Path(), help="Output JSONL file.")
    @click.option("--min-rating", type=click.IntRange(1, 5), help="Only answers rated at least N stars.")
    @click.option("--call-type", "call_types", multiple=True, help="Only these call types (repeatable).")
    @click.option("--model", "models", multiple=True, help="Only calls to these models (repeatable).")
    @click.option("--provider", "providers", multiple=True, help="Only these providers (repeatable).")
    @click.option("--since", help="Only calls at or after this ISO date/time.")
    @click.option("--until", help="Only calls before this ISO date/time.")
    @click.option("--tag", "tags", multiple=True, help="Only calls carrying every one of these tags.")
    @click.option("--include-judge/--no-include-judge", default=False, help="Use LLM-judge labels where no human label exists.")
    @click.option("--granularity", type=click.Choice(["interaction", "run"]), default="interaction", show_default=True)
    @click.option("--eval-split", type=float, help="Fraction of runs written to the eval twin file.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/eval split.")
    @click.option("--dedup/--no-dedup", default=False, help="Write identical context+answer once.")
    @click.option("--max-tokens", type=click.IntRange(1), help="Drop (and report) longer examples.")
    @click.option("--keep-long/--no-keep-long", default=False, help="Keep over-long examples (still reported).")
    @click.option("--tokenizer", help="Tokenizer folder or name for --max-tokens.")
    @click.option("--redact/--no-redact", default=False, help="Replace card numbers, IBANs, emails, keys, ...")
    @click.option("--kto-desirable", type=click.IntRange(1, 5), default=4, show_default=True)
    @click.option("--kto-undesirable", type=click.IntRange(1, 5), default=2, show_default=True)
    @click.option("--harvest-pairs/--no-harvest-pairs", default=True, help="DPO: pair high and low rated answers to one context.")
    @click.option("--option", "exporter_options", multiple=True, metavar="KEY=VALUE",
                  help="An option for the exporter (repeatable; VALUE is JSON or text).")
    @click.option("--count", "count_only", is_flag=True, help="Only print how many lines would be written.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
    @click.pass_context
    def command(ctx: click.Context, **values: Any) -> None:
        _export(ctx, name, values)

    command.help = f"Export training data in the {name!r} format."
    return command


def _merge_config(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    from wilson_core.exporting.defaults import export_defaults

    from ._common import db_option_path

    # ./pyproject.toml, else the one beside the database: the dashboard reads the same
    config, _ = export_defaults(db_option_path(ctx) or os.environ.get("WILSON_DB"))
    known = set(values) | set(_ALIASES)
    unknown = sorted(set(config) - known - {"format"})
    if unknown:
        raise WilsonError(f"pyproject.toml [tool.wilson.export]: unknown keys {', '.join(unknown)}")
    merged = dict(values)
    for key, value in config.items():
        param = _ALIASES.get(key, key)
        if param == "format" or param not in values:
            continue
        if ctx.get_parameter_source(param) in (ParameterSource.DEFAULT, None):
            merged[param] = tuple(value) if param in _MULTI.values() and isinstance(value, list) else value
    return merged


def _export(ctx: click.Context, name: str, values: dict[str, Any]) -> None:
    from wilson_core.exporting import ExportOptions, count_records, run_export
    from wilson_core.exporting.options import NothingMatched
    from wilson_core.exporting.pipeline import load_exporter

    values = _merge_config(ctx, values)
    count_only = values.pop("count_only")
    quiet = values.pop("quiet")
    as_json = values.pop("as_json")
    out = values.pop("out")
    values["exporter_options"] = _parse_options(values.get("exporter_options") or ())
    options = ExportOptions(format=name, **values)
    load_exporter(options)  # unknown format: fail before opening the database
    store = open_db(ctx)
    if count_only:
        click.echo(count_records(store, options))
        return
    if not out:
        raise WilsonError("--out PATH is required (or set out = \"...\" in [tool.wilson.export])")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        manifest = run_export(store, options, out, progress=not quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = manifest["counts"]
    to_stdout = str(out) == "-"  # the lines went to standard output: say the rest on stderr
    if as_json:
        if to_stdout:
            click.echo(json.dumps(manifest, ensure_ascii=False, default=str), err=True)
        else:
            echo_json(manifest)
    elif to_stdout:
        click.echo(f"Wrote {counts['train']} lines to standard output (no manifest file)", err=True)
    else:
        path = Path(out)
        if path.is_symlink():  # written through the link: the files are beside its target
            path = Path(os.path.realpath(path))
        click.echo(f"Wrote {counts['train']} lines to {path}", err=False)
        if options.eval_split:
            click.echo(f"Wrote {counts['eval']} lines to {path.parent / manifest['files']['eval']['path']}")
        if counts["skipped"]:
            skipped = ", ".join(f"{k}: {v}" for k, v in counts["skipped"].items())
            click.echo(f"Skipped: {skipped}")
        if manifest["redaction"].get("enabled"):
            replaced = manifest["redaction"]["replaced"]
            click.echo("Redacted: " + (", ".join(f"{k} x{v}" for k, v in replaced.items()) or "nothing found"))
        click.echo(f"Manifest: {path}.manifest.json")
    if counts["total"] == 0:
        raise NothingMatched(
            "no examples matched the filters: wrote an empty file and a manifest saying 0 "
            f"(exit code {EXIT_NOTHING_MATCHED})"
        )


def _parse_options(pairs: Any) -> dict[str, Any]:
    """``KEY=VALUE`` strings (or a table from pyproject.toml) as exporter options."""
    from wilson_core.settings import parse_key_values

    if isinstance(pairs, dict):
        return dict(pairs)
    return parse_key_values(pairs)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--tokenizer", help="Tokenizer folder or name whose chat template renders the lines.")
@click.option("--format", "format_name", help="Export format (default: from the manifest or the lines).")
@click.option("--assistant-only-loss/--no-assistant-only-loss", default=True, show_default=True,
              help="Require the template to mark assistant turns ({% generation %}).")
@click.option("--max-tokens", type=click.IntRange(1), help="Report lines longer than N tokens as failures.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate_command(
    path: str, tokenizer: str | None, format_name: str | None, assistant_only_loss: bool,
    max_tokens: int | None, as_json: bool,
) -> None:
    """Check every line of an export; render it through a tokenizer's chat template.

    Exit code 1 when any line fails.
    """
    from wilson_core.exporting import ExportOptions
    from wilson_core.exporting.options import ValidationFailed
    from wilson_core.exporting.pipeline import load_exporter
    from wilson_core.exporting.validate import detect_format, validate_file

    file = Path(path)
    if not file.is_file():
        raise WilsonError(f"no export file at {file}")
    name = format_name or detect_format(file)
    exporter = load_exporter(ExportOptions(format=name))
    report = validate_file(
        file, exporter, format_name=name, tokenizer=tokenizer,
        assistant_only_loss=assistant_only_loss, max_tokens=max_tokens,
    )
    if as_json:
        echo_json(report.describe())
    else:
        click.echo(f"{file}: {report.lines} lines, format {name}")
        tokens = report.tokens
        if tokens.get("counted"):
            click.echo(
                f"tokens: min {tokens['min']}, mean {tokens['mean']}, p50 {tokens['p50']}, "
                f"p95 {tokens['p95']}, max {tokens['max']}"
            )
        elif not tokenizer:
            click.echo("tokens: not counted (pass --tokenizer to render through a chat template)")
        for failure in report.failures:
            where = f"line {failure['line']}" if failure["line"] else "tokenizer"
            click.echo(f"  {where}: {failure['error']}", err=True)
        click.echo("OK" if report.ok else f"FAILED: {report.failed_lines} problem(s)")
    if not report.ok:
        raise ValidationFailed(f"{report.failed_lines} problem(s) in {file}")
