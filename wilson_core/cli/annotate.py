"""``wilson annotate ...``: rate, pair, correct, regenerate, harvest, import, judge, undo."""

from __future__ import annotations

from typing import Any

import click

from ._common import echo_json, json_option, open_db, resolving_ids, table


def register(cli: click.Group) -> None:
    cli.add_command(annotate_group)


@click.group("annotate")
@click.option(
    "--annotator", default="local", show_default=True, help="Whose labels these are."
)
@click.pass_context
def annotate_group(ctx: click.Context, annotator: str) -> None:
    """Label interactions: stars, preference pairs, corrections, tags, notes.

    Every change is a new version of the label (see ``history``); ``undo``
    takes the latest one back.
    """
    ctx.ensure_object(dict)
    ctx.obj["annotator"] = annotator


def _annotator(ctx: click.Context) -> str:
    return ctx.find_object(dict).get("annotator", "local")


def _label_dict(annotation: Any) -> dict[str, Any]:
    from wilson_core import converter

    return converter.unstructure(annotation) if annotation is not None else None


def _describe(annotation: Any) -> str:
    if annotation is None:
        return "no label"
    parts = [f"v{annotation.version}"]
    if annotation.rating is not None:
        parts.append("★" * annotation.rating + "☆" * (5 - annotation.rating))
    if annotation.preference:
        parts.append(annotation.preference)
    if annotation.tags:
        parts.append("tags: " + ", ".join(annotation.tags))
    if annotation.notes:
        parts.append(f"notes: {annotation.notes}")
    if annotation.corrected_response is not None:
        parts.append("corrected")
    if annotation.source != "human" or annotation.status != "accepted":
        parts.append(f"[{annotation.source}, {annotation.status}]")
    return "  ".join(parts)


@annotate_group.command("rate")
@click.argument("interaction_id")
@click.argument("stars", type=int)
@click.option("--note", "notes", help="Notes to keep with the label.")
@click.option("--tag", "tags", multiple=True, help="Add a tag (repeatable).")
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def rate_command(ctx: click.Context, interaction_id: str, stars: int, notes: str | None, tags: tuple[str, ...], as_json: bool) -> None:
    """Rate INTERACTION_ID with STARS (1-5); notes and tags already there are kept."""
    from wilson_core import annotations

    label = annotations.annotate(
        open_db(ctx), interaction_id, rating=stars, notes=notes, add_tags=tags, annotator=_annotator(ctx)
    )
    _show(label, as_json)


@annotate_group.command("tag")
@click.argument("interaction_id")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove these tags instead of adding them.")
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def tag_command(ctx: click.Context, interaction_id: str, tags: tuple[str, ...], remove: bool, as_json: bool) -> None:
    """Add (or --remove) TAGS on INTERACTION_ID."""
    from wilson_core import annotations

    kwargs = {"remove_tags": tags} if remove else {"add_tags": tags}
    _show(annotations.annotate(open_db(ctx), interaction_id, annotator=_annotator(ctx), **kwargs), as_json)


@annotate_group.command("note")
@click.argument("interaction_id")
@click.argument("text")
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def note_command(ctx: click.Context, interaction_id: str, text: str, as_json: bool) -> None:
    """Set the notes of INTERACTION_ID (an empty TEXT clears them)."""
    from wilson_core import annotations

    kwargs: dict[str, Any] = {"notes": text} if text else {"clear": ["notes"]}
    _show(annotations.annotate(open_db(ctx), interaction_id, annotator=_annotator(ctx), **kwargs), as_json)


@annotate_group.command("pair")
@click.argument("chosen_id")
@click.argument("rejected_id")
@click.option("--force", is_flag=True, help="Pair answers even if their contexts differ.")
@json_option
@click.pass_context
@resolving_ids(chosen_id="interaction", rejected_id="interaction")
def pair_command(ctx: click.Context, chosen_id: str, rejected_id: str, force: bool, as_json: bool) -> None:
    """Prefer CHOSEN_ID over REJECTED_ID (two answers to the same context)."""
    from wilson_core import annotations, converter

    made = annotations.pair(open_db(ctx), chosen_id, rejected_id, force=force, annotator=_annotator(ctx))
    if as_json:
        echo_json(converter.unstructure(made))
    else:
        click.echo(f"pair {made.id}: chosen {made.chosen_id}, rejected {made.rejected_id}")


@annotate_group.command("correct")
@click.argument("interaction_id")
@click.option("--response", help="The corrected response text.")
@click.option(
    "--file", "path", type=click.Path(exists=True, dir_okay=False), help="Read the corrected response from a file."
)
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def correct_command(ctx: click.Context, interaction_id: str, response: str | None, path: str | None, as_json: bool) -> None:
    """Store a corrected response for INTERACTION_ID (gold SFT answer; chosen over the original for DPO)."""
    from wilson_core import annotations
    from wilson_core.errors import AnnotationRefused

    if (response is None) == (path is None):
        raise AnnotationRefused("give the corrected response with --response TEXT or --file PATH")
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            response = handle.read()
    label = annotations.correct(open_db(ctx), interaction_id, response or "", annotator=_annotator(ctx))
    _show(label, as_json)


@annotate_group.command("regenerate")
@click.argument("interaction_id")
@click.option("--provider", required=True, help="NAME:MODEL of the provider to ask, e.g. openai:gpt-4o.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Provider option (repeatable).")
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def regenerate_command(ctx: click.Context, interaction_id: str, provider: str, options: tuple[str, ...], as_json: bool) -> None:
    """Ask PROVIDER for another answer to the same context; it is captured as a new interaction.

    Then keep the better one with ``wilson annotate pair CHOSEN REJECTED``.
    """
    from wilson_core import annotations, converter

    new = annotations.regenerate(open_db(ctx), interaction_id, provider, **parse_options(options))
    if as_json:
        echo_json(converter.unstructure(new))
        return
    click.echo(f"new interaction {new.id} ({new.provider}:{new.model}) in run {new.run_id} #{new.sequence_num}")
    click.echo(new.response_content or "")
    click.echo(f"keep it:   wilson annotate pair {new.id} {interaction_id}")
    click.echo(f"or not:    wilson annotate pair {interaction_id} {new.id}")


@annotate_group.command("harvest-pairs")
@click.option("--min-gap", default=2, show_default=True, help="Smallest rating difference (stars).")
@click.option("--dry-run", is_flag=True, help="Show the pairs without writing them.")
@click.option(
    "--from-shadow",
    is_flag=True,
    help="Pair upstream answers with the local model's shadow answers (wilson proxy shadow routes), "
    "by the ratings that count (accepted judge labels included).",
)
@json_option
@click.pass_context
def harvest_command(ctx: click.Context, min_gap: int, dry_run: bool, from_shadow: bool, as_json: bool) -> None:
    """Make pairs from answers to the same context whose ratings differ by MIN_GAP stars or more."""
    from wilson_core import annotations, converter

    made = annotations.harvest_pairs(open_db(ctx), min_gap=min_gap, dry_run=dry_run, from_shadow=from_shadow)
    if as_json:
        echo_json(converter.unstructure(made))
        return
    verb = "would make" if dry_run else "made"
    click.echo(f"{verb} {len(made)} pair(s)")
    for item in made:
        click.echo(f"  chosen {item.chosen_id}  rejected {item.rejected_id}")


@annotate_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True)
@json_option
@click.pass_context
def import_command(ctx: click.Context, path: str, fmt: str, as_json: bool) -> None:
    """Import labels from a CSV or JSONL file (id, rating, preference, tags, notes, corrected_response).

    The whole file is checked first; if any line is wrong nothing is written
    and every problem is listed with its line number.
    """
    from wilson_core.annotations.importing import import_file

    written = import_file(open_db(ctx), path, fmt=fmt, annotator=_annotator(ctx) if _annotator(ctx) != "local" else "import")
    if as_json:
        echo_json({"imported": len(written)})
    else:
        click.echo(f"imported {len(written)} label(s) from {path}")


@annotate_group.command("judge")
@click.option("--provider", required=True, help="NAME:MODEL of the judge model.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Provider option (repeatable).")
@click.option("--rubric", "rubric_path", type=click.Path(exists=True, dir_okay=False), help="Rubric file (JSON or TOML).")
@click.option("--criterion", "criteria", multiple=True, metavar="NAME=WEIGHT", help="A criterion and its weight (repeatable; replaces the rubric's).")
@click.option("--limit", type=int, default=20, show_default=True, help="How many interactions to judge.")
@click.option("--id", "ids", multiple=True, help="Judge these interactions (repeatable).")
@click.option("--call-type", "call_types", multiple=True, help="Only this call type (repeatable).")
@json_option
@click.pass_context
@resolving_ids(ids="interaction")
def judge_command(
    ctx: click.Context,
    provider: str,
    options: tuple[str, ...],
    rubric_path: str | None,
    criteria: tuple[str, ...],
    limit: int,
    ids: tuple[str, ...],
    call_types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Let a model rate interactions with a rubric; its labels are proposals to accept or reject."""
    from wilson_core.annotations import judge

    rubric = judge.load_rubric(rubric_path) if rubric_path else judge.DEFAULT_RUBRIC
    if criteria:
        rubric = judge.rubric_with_weights(rubric, criteria)
    report = judge.judge(
        open_db(ctx),
        provider,
        rubric=rubric,
        limit=limit,
        ids=ids or None,
        call_types=call_types,
        provider_options=parse_options(options),
    )
    if as_json:
        echo_json(report.as_dict())
        return
    click.echo(f"{len(report.proposals)} proposal(s) written, {len(report.failures)} failed")
    for annotation in report.proposals:
        click.echo(f"  {annotation.interaction_id}  {_describe(annotation)}")
    for interaction_id, reason in report.failures:
        click.echo(f"  {interaction_id}  failed: {reason}", err=True)
    if report.proposals:
        click.echo("review: wilson annotate proposals; wilson annotate accept ID... / reject ID...")


@annotate_group.command("proposals")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@click.pass_context
def proposals_command(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List judge proposals waiting for a decision."""
    from wilson_core import annotations

    items = annotations.pending_proposals(open_db(ctx), limit=limit)
    if as_json:
        echo_json([_label_dict(a) for a in items])
        return
    rows = [
        {"interaction": a.interaction_id, "rating": a.rating, "judge": a.annotator, "notes": a.notes}
        for a in items
    ]
    click.echo(table(rows, ["interaction", "rating", "judge", "notes"]))


def _decide(ctx: click.Context, ids: tuple[str, ...], all_: bool, status: str, as_json: bool) -> None:
    from wilson_core import annotations
    from wilson_core.errors import AnnotationRefused

    store = open_db(ctx)
    if all_:
        ids = tuple(a.interaction_id for a in annotations.pending_proposals(store))
        if not ids:
            raise AnnotationRefused("there are no proposals waiting for a decision")
    elif not ids:
        raise AnnotationRefused("name the interactions (IDS...) or pass --all")
    written = annotations.set_status(store, ids, status)
    if as_json:
        echo_json([_label_dict(a) for a in written])
    else:
        click.echo(f"{status} {len(written)} proposal(s)")


@annotate_group.command("accept")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every waiting proposal.")
@json_option
@click.pass_context
@resolving_ids(ids="interaction")
def accept_command(ctx: click.Context, ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
    """Accept judge proposals for IDS (exports use them with --include-judge)."""
    _decide(ctx, ids, all_, "accepted", as_json)


@annotate_group.command("reject")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every waiting proposal.")
@json_option
@click.pass_context
@resolving_ids(ids="interaction")
def reject_command(ctx: click.Context, ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
    """Reject judge proposals for IDS (kept in the history, never exported)."""
    _decide(ctx, ids, all_, "rejected", as_json)


@annotate_group.command("history")
@click.argument("interaction_id")
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def history_command(ctx: click.Context, interaction_id: str, as_json: bool) -> None:
    """Every label version of INTERACTION_ID, oldest first, and its pairs."""
    from wilson_core import annotations, converter

    store = open_db(ctx)
    versions = annotations.history(store, interaction_id)
    pairs = annotations.pairs_of(store, interaction_id, include_undone=True)
    if as_json:
        echo_json(
            {
                "versions": [
                    {**converter.unstructure(v.annotation), "undone_at": v.undone_at} for v in versions
                ],
                "pairs": converter.unstructure(pairs),
            }
        )
        return
    rows = [
        {
            "version": v.annotation.version,
            "source": v.annotation.source,
            "annotator": v.annotation.annotator,
            "label": _describe(v.annotation),
            "created_at": v.annotation.created_at,
            "undone_at": v.undone_at or "",
        }
        for v in versions
    ]
    click.echo(table(rows, ["version", "source", "annotator", "label", "created_at", "undone_at"]))
    for item in pairs:
        role = "chosen" if item.chosen_id == interaction_id else "rejected"
        other = item.rejected_id if role == "chosen" else item.chosen_id
        state = f" (undone {item.undone_at})" if item.undone_at else ""
        click.echo(f"pair {item.id}: {role} against {other} [{item.source}]{state}")


@annotate_group.command("undo")
@click.argument("interaction_id")
@click.option("--source", default="human", show_default=True, type=click.Choice(["human", "import", "rule", "judge"]))
@json_option
@click.pass_context
@resolving_ids(interaction_id="interaction")
def undo_command(ctx: click.Context, interaction_id: str, source: str, as_json: bool) -> None:
    """Take back the latest label version of INTERACTION_ID (a pair it made is taken back too)."""
    from wilson_core import annotations

    annotator = _annotator(ctx)
    if source == "judge" or (source in ("import", "rule") and annotator == "local"):
        annotator = _stream_annotator(open_db(ctx), interaction_id, source) or annotator
    now = annotations.undo(open_db(ctx), interaction_id, source=source, annotator=annotator)
    if as_json:
        echo_json(_label_dict(now))
    else:
        click.echo(f"undone; current label: {_describe(now)}")


def _stream_annotator(store: Any, interaction_id: str, source: str) -> str | None:
    from wilson_core.store import labels

    return labels.stream_annotator(store.connection(), interaction_id, source)


def _show(label: Any, as_json: bool) -> None:
    if as_json:
        echo_json(_label_dict(label))
    else:
        click.echo(f"{label.interaction_id}: {_describe(label)}")


def parse_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values that parse as JSON (numbers, true, lists) are decoded."""
    import json

    from wilson_core.errors import WilsonError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WilsonError(f"--option must be KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options
