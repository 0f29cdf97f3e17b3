"""The export pipeline: select -> examples -> split, dedup, length -> redact -> exporter -> files.

Everything streams: rows are read in batches, each example is written as soon
as it is built, and the interaction ids for the manifest go to a temporary
file, so memory does not grow with the number of rows (``dedup`` keeps one
20-byte digest per line, and ``eval_split`` the ids of the eval runs).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core import __version__
from wilson_core.records import utcnow

from .examples import (
    ANSWER,
    PAIR,
    RATED,
    Example,
    MalformedExample,
    assistant_message,
    merge_run,
    message_key,
    normalize,
    tool_message,
)
from .options import ExportError, ExportOptions
from .redaction import Redactor
from .select import (
    FROM,
    RATING,
    context_of,
    count_rows,
    explicit_pairs,
    harvested_pairs,
    iter_rows,
    rows_by_id,
    tags_of,
    tool_calls_of,
    tool_results_for,
    tools_of,
    where_clause,
)
from .tokens import TokenCounter
from .writer import AtomicFile, check_writable, eval_path, manifest_path

#: version of the manifest layout and of the example shapes written by the built-in exporters.
SCHEMA_VERSION = 1
#: how many over-long examples the manifest lists one by one.
OVER_LENGTH_LISTED = 100

TRAIN = "train"
EVAL = "eval"


def load_exporter(options: ExportOptions) -> Any:
    """An instance of the exporter named by ``options.format`` (only that one is imported)."""
    from wilson_core.interfaces import EXPORTERS
    from wilson_core.plugins import load_driver

    cls = load_driver(EXPORTERS, options.format)
    exporter = cls(**dict(options.exporter_options))
    if options.granularity == "run" and exporter.needs != "answers":
        raise ExportError(
            f"--granularity run needs a conversation format such as sft; "
            f"{options.format!r} works on single answers ({exporter.needs})"
        )
    return exporter


class Stats:
    """What the manifest says about one export, gathered while it streams."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.examples = 0
        self.lines = {TRAIN: 0, EVAL: 0}
        self.over_length: list[dict[str, Any]] = []
        self.over_length_count = 0
        self.origins: Counter[str] = Counter()


# -- examples ------------------------------------------------------------------


def _label_fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "rating": row["rating"],
        "run_id": row["run_id"],
        "call_type": row["call_type"] or "",
        "model": row["model"] or "",
        "provider": row["provider"] or "",
        "tags": tags_of(row),
    }


def _answer(row: sqlite3.Row) -> dict[str, Any]:
    answer = assistant_message(row["response_content"], tool_calls_of(row))
    if not answer["content"] and not answer.get("tool_calls"):
        raise MalformedExample("empty_answer")
    return answer


def _answer_example(row: sqlite3.Row, stats: Stats) -> Example | None:
    """The SFT example of one selected row, or ``None`` (counted in ``stats``) when it is malformed."""
    try:
        prompt = normalize(context_of(row))
        corrected = row["corrected_response"]
        if corrected is not None:
            completion, origin = assistant_message(corrected), "correction"
        else:
            completion, origin = _answer(row), ANSWER
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    tags = row["tags_json"]
    return Example(
        kind=ANSWER,
        prompt=prompt,
        completion=(completion,),
        tools=tools_of(row),
        interaction_ids=(row["id"],),
        origin=origin,
        rating=row["rating"],
        run_id=row["run_id"],
        call_type=row["call_type"] or "",
        model=row["model"] or "",
        provider=row["provider"] or "",
        tags=json.loads(tags) if tags else (),
    )


def _answer_examples(conn: sqlite3.Connection, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options)
    for row in iter_rows(conn, where, params):  # the hot loop of big exports: kept lean
        example = _answer_example(row, stats)
        if example is not None:
            yield example


def _kto_label(row: sqlite3.Row, options: ExportOptions) -> bool | None:
    rating = row["rating"]
    if rating is not None:
        if rating >= options.kto_desirable:
            return True
        if rating <= options.kto_undesirable:
            return False
        return None
    if row["corrected_response"] is not None:
        return False  # a corrected answer was not good enough
    return {"chosen": True, "rejected": False}.get(row["preference"] or "")


def rated_where(options: ExportOptions) -> tuple[str, dict[str, Any]]:
    """The rows KTO examples come from: rated, corrected or marked chosen/rejected."""
    where, params = where_clause(options)
    where += (
        f" AND ({RATING} IS NOT NULL OR l.corrected_response IS NOT NULL"
        " OR l.preference IN ('chosen', 'rejected'))"
    )
    return where, params


def _rated_row_examples(row: sqlite3.Row, options: ExportOptions, stats: Stats) -> list[Example]:
    """The KTO examples of one selected row (none when it is malformed)."""
    try:
        prompt = normalize(context_of(row))
        answer = _answer(row)
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return []
    common = {"prompt": prompt, "tools": tools_of(row), "interaction_ids": (row["id"],), **_label_fields(row)}
    examples = []
    label = _kto_label(row, options)
    if label is None:
        stats.skipped["rating_between_thresholds"] += 1
    else:
        examples.append(Example(kind=RATED, completion=(answer,), label=label, origin=ANSWER, **common))
    if row["corrected_response"] is not None:
        examples.append(
            Example(
                kind=RATED,
                completion=(assistant_message(row["corrected_response"]),),
                label=True,
                origin="correction",
                **common,
            )
        )
    return examples


def _rated_examples(conn: sqlite3.Connection, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = rated_where(options)
    for row in iter_rows(conn, where, params):
        yield from _rated_row_examples(row, options, stats)


def _pair(chosen: sqlite3.Row, rejected: sqlite3.Row, origin: str, stats: Stats) -> Example | None:
    try:
        prompt = normalize(context_of(chosen))
        chosen_answer = _answer(chosen)
        rejected_answer = _answer(rejected)
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    if chosen["context_hash"] != rejected["context_hash"]:
        stats.skipped["pair_with_different_contexts"] += 1
        return None
    if message_key(chosen_answer) == message_key(rejected_answer):
        stats.skipped["identical_pair"] += 1
        return None
    return Example(
        kind=PAIR,
        prompt=prompt,
        completion=(chosen_answer,),
        rejected=(rejected_answer,),
        tools=tools_of(chosen),
        interaction_ids=(chosen["id"], rejected["id"]),
        origin=origin,
        **_label_fields(chosen),
    )


def _explicit_pair_examples(
    conn: sqlite3.Connection,
    options: ExportOptions,
    stats: Stats,
    seen: set[tuple[str, str]],
) -> Iterator[Example]:
    """DPO examples of the ``pairs`` table; the pairs taken go into ``seen``."""
    where, params = where_clause(options, rating=False)
    for pair in explicit_pairs(conn, options):
        chosen_ids = {row["id"] for row in iter_rows(conn, where + " AND i.id = :pair_chosen", {**params, "pair_chosen": pair["chosen_id"]})}
        if pair["chosen_id"] not in chosen_ids:
            continue  # filtered out, failed, or in a deleted run
        rows = rows_by_id(conn, [pair["chosen_id"], pair["rejected_id"]], options)
        if pair["rejected_id"] not in rows:
            stats.skipped["pair_rejected_unavailable"] += 1
            continue
        seen.add((pair["chosen_id"], pair["rejected_id"]))
        example = _pair(rows[pair["chosen_id"]], rows[pair["rejected_id"]], f"pair:{pair['source']}", stats)
        if example is not None:
            yield example


def _correction_pair(row: sqlite3.Row, stats: Stats) -> Example | None:
    """The corrected answer chosen over the original one (``None`` when malformed or identical)."""
    try:
        original = _answer(row)
        prompt = normalize(context_of(row))
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    corrected = assistant_message(row["corrected_response"])
    if message_key(corrected) == message_key(original):
        stats.skipped["identical_pair"] += 1
        return None
    return Example(
        kind=PAIR,
        prompt=prompt,
        completion=(corrected,),
        rejected=(original,),
        tools=tools_of(row),
        interaction_ids=(row["id"],),
        origin="correction",
        **_label_fields(row),
    )


def _harvested_pair(
    conn: sqlite3.Connection, options: ExportOptions, chosen_id: str, rejected_id: str, stats: Stats
) -> Example | None:
    rows = rows_by_id(conn, [chosen_id, rejected_id], options)
    return _pair(rows[chosen_id], rows[rejected_id], "harvested", stats)


def _pair_examples(conn: sqlite3.Connection, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options, rating=False)
    seen: set[tuple[str, str]] = set()
    yield from _explicit_pair_examples(conn, options, stats, seen)
    for row in iter_rows(conn, where + " AND l.corrected_response IS NOT NULL", params):
        example = _correction_pair(row, stats)
        if example is not None:
            yield example
    if not options.harvest_pairs:
        return
    for chosen_id, rejected_id in harvested_pairs(conn, options, where, params):
        if (chosen_id, rejected_id) in seen:
            continue
        example = _harvested_pair(conn, options, chosen_id, rejected_id, stats)
        if example is not None:
            yield example


def _run_example(conn: sqlite3.Connection, rows: list[sqlite3.Row], options: ExportOptions, stats: Stats) -> Example | None:
    if options.min_rating is not None:
        rated = [r for r in rows if r["rating"] is not None or r["corrected_response"] is not None]
        if not rated or any(
            r["corrected_response"] is None and r["rating"] < options.min_rating for r in rated
        ):
            stats.skipped["run_below_min_rating"] += 1
            return None
    results = tool_results_for(conn, [r["id"] for r in rows])
    steps = []
    tools: dict[str, dict[str, Any]] = {}
    used: list[sqlite3.Row] = []
    try:
        for row in rows:
            for tool in tools_of(row):
                tools[json.dumps(tool.get("function", tool).get("name"))] = tool
            context = normalize(context_of(row))
            used.append(row)
            if row["corrected_response"] is not None:
                # the rest of the run was conditioned on the answer that was corrected
                steps.append((context, assistant_message(row["corrected_response"]), []))
                break
            answer = _answer(row)
            recorded = [
                tool_message(r["tool_name"] or "tool", r["content"], r["tool_call_id"])
                for r in results.get(row["id"], [])
            ]
            steps.append((context, answer, recorded))
    except MalformedExample as exc:
        stats.skipped[exc.args[0]] += 1
        return None
    conversation = merge_run(steps)
    ratings = [r["rating"] for r in used if r["rating"] is not None]
    tags = sorted({t for r in used for t in tags_of(r)})
    first = used[0]
    return Example(
        kind=ANSWER,
        prompt=conversation[:-1],
        completion=conversation[-1:],
        tools=list(tools.values()),
        rating=min(ratings) if ratings else None,
        interaction_ids=tuple(r["id"] for r in used),
        run_id=first["run_id"],
        origin="run",
        call_type=first["call_type"] or "",
        model=first["model"] or "",
        provider=first["provider"] or "",
        tags=tags,
    )


def _run_examples(conn: sqlite3.Connection, options: ExportOptions, stats: Stats) -> Iterator[Example]:
    where, params = where_clause(options, rating=False)
    order = "r.started_at, i.run_id, i.sequence_num, i.rowid"
    group: list[sqlite3.Row] = []
    for row in iter_rows(conn, where, params, order_by=order):
        if group and row["run_id"] != group[0]["run_id"]:
            example = _run_example(conn, group, options, stats)
            if example is not None:
                yield example
            group = []
        group.append(row)
    if group:
        example = _run_example(conn, group, options, stats)
        if example is not None:
            yield example


def iter_examples(store: Any, options: ExportOptions, needs: str, stats: Stats | None = None) -> Iterator[Example]:
    """The examples an exporter that ``needs`` answers, pairs or ratings gets, before any stage."""
    conn = store.connection()
    stats = stats or Stats()
    if needs == "answers":
        if options.granularity == "run":
            return _run_examples(conn, options, stats)
        return _answer_examples(conn, options, stats)
    if needs == "ratings":
        return _rated_examples(conn, options, stats)
    if needs == "pairs":
        return _pair_examples(conn, options, stats)
    raise ExportError(f"exporter {options.format!r} needs {needs!r}: expected answers, pairs or ratings")


# -- stages ------------------------------------------------------------------


def eval_runs(conn: sqlite3.Connection, options: ExportOptions) -> frozenset[str]:
    """The runs that go to the eval file: a seeded random ``eval_split`` fraction of the selected runs."""
    if not options.eval_split:
        return frozenset()
    where, params = where_clause(options, rating=options.granularity != "run")
    sql = f"SELECT DISTINCT i.run_id FROM {FROM} WHERE {where} ORDER BY i.run_id"
    runs = [row[0] for row in conn.execute(sql, params)]
    if len(runs) < 2:
        return frozenset()
    random.Random(options.seed).shuffle(runs)
    count = min(len(runs) - 1, max(1, round(len(runs) * options.eval_split)))
    return frozenset(runs[:count])


def _digest(example: Example) -> bytes:
    data = json.dumps(
        [example.prompt, example.completion, example.rejected, example.label, example.tools],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.blake2b(data.encode("utf-8"), digest_size=20).digest()


def _stream(
    store: Any,
    options: ExportOptions,
    exporter: Any,
    stats: Stats,
    *,
    redactor: Redactor | None,
    counter: TokenCounter | None,
) -> Iterator[tuple[str, Example, dict[str, Any]]]:
    """(split, example, record) for every line the export writes, in order."""
    conn = store.connection()
    eval_ids = eval_runs(conn, options)
    seen: set[bytes] = set()
    for example in iter_examples(store, options, exporter.needs, stats):
        stats.examples += 1
        if options.dedup:
            digest = _digest(example)
            if digest in seen:
                stats.skipped["duplicate"] += 1
                continue
            seen.add(digest)
        if counter is not None and options.max_tokens is not None:
            tokens = counter.count(example)
            if tokens > options.max_tokens:
                stats.over_length_count += 1
                if len(stats.over_length) < OVER_LENGTH_LISTED:
                    stats.over_length.append({"interaction_ids": list(example.interaction_ids), "tokens": tokens})
                if not options.keep_long:
                    stats.skipped["over_max_tokens"] += 1
                    continue
        if redactor is not None:
            example = redactor.example(example)
        record = exporter.record(example)
        if record is None:
            stats.skipped["refused_by_exporter"] += 1
            continue
        split = EVAL if example.run_id in eval_ids else TRAIN
        stats.lines[split] += 1
        stats.origins[example.origin] += 1
        yield split, example, record


def _prepare(options: ExportOptions) -> tuple[Any, TokenCounter | None, Redactor | None]:
    exporter = load_exporter(options)
    counter = TokenCounter(options.tokenizer) if options.max_tokens is not None else None
    redactor = Redactor.with_plugins() if options.redact else None
    return exporter, counter, redactor


def iter_records(store: Any, options: ExportOptions) -> Iterator[dict[str, Any]]:
    """The JSON objects an export writes (train and eval lines, in order), redacted if asked."""
    exporter, counter, redactor = _prepare(options)
    for _, _, record in _stream(store, options, exporter, Stats(), redactor=redactor, counter=counter):
        yield record


def count_records(store: Any, options: ExportOptions) -> int:
    """Exactly the number of lines :func:`run_export` would write (train + eval).

    Rows whose example cannot fail are counted by SQLite alone (see
    :mod:`.counting`); with ``dedup``, ``max_tokens`` or an exporter that may
    refuse examples, the whole pipeline runs without writing.
    """
    from .counting import count_fast, fast_countable

    exporter, counter, _ = _prepare(options)
    if fast_countable(options, exporter):
        return count_fast(store, options, exporter.needs, Stats())
    return count_by_pipeline(store, options)


def count_by_pipeline(store: Any, options: ExportOptions) -> int:
    """The line count by building every line without writing (the slow, general way)."""
    exporter, counter, _ = _prepare(options)
    return sum(1 for _ in _stream(store, options, exporter, Stats(), redactor=None, counter=counter))


def count_selected(store: Any, options: ExportOptions) -> int:
    """How many stored calls the filters select (the progress bar's total)."""
    where, params = where_clause(options, rating=options.granularity != "run")
    return count_rows(store.connection(), where, params)


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _schema_info(store: Any) -> dict[str, Any]:
    try:
        names = [row[0] for row in store.connection().execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson' ORDER BY applied_at, rowid"
        )]
    except sqlite3.Error:
        names = []
    return {"export_schema_version": SCHEMA_VERSION, "database_migrations": names}


def run_export(
    store: Any, options: ExportOptions, out_path: str | Path, *, progress: bool = False
) -> dict[str, Any]:
    """Write the export to ``out_path`` (and its eval twin) and ``out_path.manifest.json``.

    Files are written under temporary names and renamed only when the whole
    export succeeded.  Returns the manifest without its ``interaction_ids``
    lists (they can hold millions of ids: read them from the manifest file).
    With ``progress`` and a terminal, a tqdm bar runs on stderr.
    """
    from wilson_core.interfaces import EXPORTERS
    from wilson_core.plugins import driver_entry_points

    path = Path(out_path).expanduser()
    exporter, counter, redactor = _prepare(options)  # an unknown format fails before any file
    check_writable(path)
    stats = Stats()
    files: dict[str, AtomicFile] = {}
    manifest_file: AtomicFile | None = None
    splits = [TRAIN, EVAL] if options.eval_split else [TRAIN]
    ids_files = {split: tempfile.TemporaryFile("w+", encoding="utf-8") for split in splits}
    bar = None
    try:
        files[TRAIN] = AtomicFile(path)
        if options.eval_split:
            files[EVAL] = AtomicFile(eval_path(path))
        manifest_file = AtomicFile(manifest_path(path))
        if progress and sys.stderr.isatty():  # the total costs a count query: only for a person
            from tqdm import tqdm

            total = count_selected(store, options)
            bar = tqdm(total=total, unit=" example", file=sys.stderr, desc=f"export {options.format}", disable=None)
        for split, example, record in _stream(store, options, exporter, stats, redactor=redactor, counter=counter):
            files[split].write_line(_dumps(record))
            ids_file = ids_files[split]
            for interaction_id in example.interaction_ids:
                ids_file.write(interaction_id + "\n")
            if bar is not None:
                bar.update(len(example.interaction_ids) if options.granularity == "run" else 1)
        info = next((i for i in driver_entry_points(EXPORTERS) if i.name == options.format), None)
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            **_schema_info(store),
            "wilson_version": __version__,
            "format": options.format,
            "exporter": {
                "name": options.format,
                "target": info.value if info else "",
                "distribution": info.distribution if info else "",
                "version": info.version if info else "",
                "needs": exporter.needs,
            },
            "created_at": utcnow(),
            "database": str(Path(store.path).resolve()),
            "options": options.describe(),
            "counts": {
                "train": stats.lines[TRAIN],
                "eval": stats.lines[EVAL],
                "total": stats.lines[TRAIN] + stats.lines[EVAL],
                "examples_built": stats.examples,
                "by_origin": dict(sorted(stats.origins.items())),
                "skipped": dict(sorted(stats.skipped.items())),
            },
            "max_tokens": None
            if options.max_tokens is None
            else {
                "limit": options.max_tokens,
                "counted_with": counter.method if counter else "",
                "over_limit": stats.over_length_count,
                "action": "kept" if options.keep_long else "dropped",
                "examples": stats.over_length,
            },
            "redaction": redactor.report() if redactor else {"enabled": False},
        }
        for f in files.values():
            f.close()
        manifest["files"] = {split: f.describe() for split, f in files.items()}
        _write_manifest(manifest_file, manifest, ids_files)
        for split in (EVAL, TRAIN):
            if split in files:
                files[split].commit()
        manifest_file.commit()
        return manifest
    except BaseException:
        for f in files.values():
            f.discard()
        if manifest_file is not None:
            manifest_file.discard()
        raise
    finally:
        if bar is not None:
            bar.close()
        for ids_file in ids_files.values():
            ids_file.close()


def _write_manifest(target: AtomicFile, manifest: dict[str, Any], ids_files: dict[str, Any]) -> None:
    """The manifest as indented JSON, with the interaction id lists streamed from their temp files."""
    head = json.dumps(manifest, indent=2, ensure_ascii=False)
    target.write(head[:-2] + ',\n  "interaction_ids": {')
    for index, (split, ids_file) in enumerate(ids_files.items()):
        target.write(("," if index else "") + f'\n    "{split}": [')
        ids_file.seek(0)
        first = True
        while True:
            chunk = [line.rstrip("\n") for line in itertools.islice(ids_file, 10_000)]
            if not chunk:
                break
            target.write(("" if first else ",") + json.dumps(chunk)[1:-1].replace(", ", ","))
            first = False
        target.write("]")
    target.write("\n  }\n}\n")
