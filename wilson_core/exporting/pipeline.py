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
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core import __version__
from wilson_core.records import utcnow
from wilson_core.store.selection import migrations_applied, run_contexts

from .building import (
    EVAL,
    TRAIN,
    Stats,
    iter_examples,
)
from .examples import (
    Example,
)
from .options import ExportError, ExportOptions
from .redaction import Redactor
from .select import (
    count_rows,
    where_clause,
)
from .tokens import TokenCounter
from .writer import (
    STDOUT,
    AtomicFile,
    check_writable,
    eval_path,
    open_manifest,
    open_output,
)

#: version of the manifest layout and of the example shapes written by the built-in exporters.
SCHEMA_VERSION = 1
#: how many over-long examples the manifest lists one by one.
OVER_LENGTH_LISTED = 100



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


def eval_runs(conn: Any, options: ExportOptions) -> frozenset[str]:
    """The runs that go to the eval file: a seeded random ``eval_split`` fraction of the selected runs.

    The draw depends only on what the runs contain and on ``options.seed``, never on
    run ids or capture times (ids are time-based): each run is keyed by the hashes of
    the contexts (messages and tools) of its selected calls, the distinct keys are
    sorted and shuffled with the seed, and whole groups of runs with the same key go
    to eval until ``eval_split`` of the runs are there.  Runs asking the same thing
    (a retry, a duplicate) so always land in the same split: no eval prompt is trained on.
    """
    if not options.eval_split:
        return frozenset()
    groups = run_groups(conn, options)
    total = sum(len(runs) for runs in groups.values())
    if total < 2:
        return frozenset()
    wanted = min(total - 1, max(1, round(total * options.eval_split)))
    keys = sorted(groups)
    random.Random(options.seed).shuffle(keys)
    chosen: list[str] = []
    for key in keys:
        runs = groups[key]
        if len(chosen) + len(runs) <= wanted:
            chosen += runs
        if len(chosen) >= wanted:
            break
    if not chosen:  # every group is larger than the eval share: the smallest one goes
        chosen = min((groups[key] for key in keys), key=len)
        if len(chosen) >= total:
            return frozenset()
    return frozenset(chosen)


def run_groups(conn: Any, options: ExportOptions) -> dict[str, list[str]]:
    """``{content key: run ids}`` of the selected runs; the key hashes each selected call's
    context and tools in sequence order (ids and times left out)."""
    where, params = where_clause(options, rating=options.granularity != "run")
    digests: dict[str, Any] = {}
    for run_id, context, tools in run_contexts(conn, where, params):
        digest = digests.get(run_id)
        if digest is None:
            digest = digests[run_id] = hashlib.blake2b(digest_size=16)
        digest.update(f"{context}\x00{tools}\x01".encode())
    groups: dict[str, list[str]] = {}
    for run_id, digest in digests.items():
        groups.setdefault(digest.hexdigest(), []).append(run_id)
    return groups


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
    # (the fast count's SQL uses SQLite's JSON functions: PostgreSQL builds every line)
    if fast_countable(options, exporter) and getattr(store, "dialect", "sqlite") == "sqlite":
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
    return {"export_schema_version": SCHEMA_VERSION, "database_migrations": migrations_applied(store)}


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

    path = Path(out_path).expanduser() if str(out_path) != STDOUT else Path(STDOUT)
    exporter, counter, redactor = _prepare(options)  # an unknown format fails before any file
    if str(path) == STDOUT and options.eval_split:
        raise ExportError("an eval split writes two files: give --out a file path, not -")
    path = check_writable(path)  # a link is written through; special files are refused
    stats = Stats()
    files: dict[str, AtomicFile] = {}
    manifest_file: AtomicFile | None = None
    splits = [TRAIN, EVAL] if options.eval_split else [TRAIN]
    ids_files = {split: tempfile.TemporaryFile("w+", encoding="utf-8") for split in splits}
    bar = None
    try:
        files[TRAIN] = open_output(path)
        if options.eval_split:
            files[EVAL] = AtomicFile(eval_path(path))
        manifest_file = open_manifest(path)
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
