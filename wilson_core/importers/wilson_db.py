"""Import an Open Accountant Wilson ``data.db`` as it is.

Wilson's tables (read, never written: the file is opened read-only):

- ``llm_interactions(id, run_id, sequence_num, call_type, model, provider,
  system_prompt, user_prompt, response_content, tool_calls_json,
  tool_defs_json, input_tokens, output_tokens, total_tokens, duration_ms,
  status, error, created_at)``
- ``llm_tool_results(id, interaction_id, tool_call_id, tool_name,
  tool_args_json, tool_result, duration_ms, created_at)``
- ``interaction_annotations(id, interaction_id, rating, preference, pair_id,
  tags, notes, annotated_at)``

What becomes of them:

- ``tool_defs_json`` holds only tool *names*; each becomes the minimal schema
  ``{"type": "function", "function": {"name": NAME}}``.
- ``tool_calls_json`` (``[{id, name, args}]``) becomes tool calls; arguments
  that are not JSON are kept verbatim in ``raw_arguments``.
- The message list is rebuilt: system prompt, user prompt, then, for later
  calls of the same agent run, each earlier call's answer and tool results
  (Wilson's agent loop sent them; its table does not keep the list).
- Rows without a run id (or with the shared ``standalone`` id) each get a run
  of their own.
- Annotations become label versions with ``source="import"`` and
  ``annotator="wilson-db"``; a ``pair_id`` shared by exactly one chosen and one
  rejected answer becomes a row of ``pairs``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from wilson_core.errors import RecordError, WilsonError
from wilson_core.importers import ImportBatch, Pair, Problems, iso_time, stable_id
from wilson_core.messages import tool_call_from_openai
from wilson_core.records import (
    PREFERENCES,
    STATUS_ERROR,
    STATUS_OK,
    Annotation,
    Interaction,
    Run,
    ToolCall,
    ToolResult,
    tool_call_message,
)
from wilson_core.store import wilson_source
from wilson_core.text import to_text

ANNOTATOR = "wilson-db"

INTERACTION_COLUMNS = (
    "id", "run_id", "sequence_num", "call_type", "model", "provider", "system_prompt",
    "user_prompt", "response_content", "tool_calls_json", "tool_defs_json", "input_tokens",
    "output_tokens", "total_tokens", "duration_ms", "status", "error", "created_at",
)
TOOL_RESULT_COLUMNS = (
    "id", "interaction_id", "tool_call_id", "tool_name", "tool_args_json", "tool_result",
    "duration_ms", "created_at",
)
ANNOTATION_COLUMNS = (
    "id", "interaction_id", "rating", "preference", "pair_id", "tags", "notes", "annotated_at",
)

_SHARED_RUN_IDS = {"", "standalone", "none", "null"}
_OK = {"ok", "success", "succeeded", "completed", "complete", "done"}
_ERROR = {"error", "failed", "failure", "fail", "errored", "timeout"}


def _open(path: Path) -> sqlite3.Connection:
    return wilson_source.open_source(path)


def _columns(conn: sqlite3.Connection, table: str) -> list[str] | None:
    return wilson_source.columns(conn, table)


def _check_table(
    conn: sqlite3.Connection, path: Path, table: str, expected: tuple[str, ...], required: bool
) -> bool:
    columns = _columns(conn, table)
    if columns is None:
        if required:
            raise RecordError(
                f"{path} is not an Open Accountant Wilson database: it has no table {table}"
            )
        return False
    missing = [c for c in expected if c not in columns]
    if missing:
        raise RecordError(f"{path}: table {table} lacks the column(s) {', '.join(missing)}")
    return True


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be a whole number, got {value!r}") from None


def _float(value: Any, what: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _status(value: Any, error: Any) -> str:
    text = str(value or "").strip().lower()
    if text in _OK or (not text and not error):
        return STATUS_OK
    if text in _ERROR or (not text and error):
        return STATUS_ERROR
    return text


def _tool_defs(value: Any) -> list[dict[str, Any]]:
    """``tool_defs_json`` (names, or objects) as tool schemas."""
    if value is None or value == "":
        return []
    data = json.loads(value) if isinstance(value, (str, bytes)) else value
    if not isinstance(data, list):
        raise ValueError(f"tool_defs_json must be a JSON list, got {type(data).__name__}")
    tools = []
    for item in data:
        if isinstance(item, str) and item:
            tools.append({"type": "function", "function": {"name": item}})
        elif isinstance(item, dict) and isinstance(item.get("function"), dict):
            tools.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            tools.append({"type": "function", "function": item})
        else:
            raise ValueError(f"tool_defs_json has an entry that is not a tool name: {item!r}")
    return tools


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if value is None or value == "":
        return ()
    data = json.loads(value) if isinstance(value, (str, bytes)) else value
    if not isinstance(data, list):
        raise ValueError(f"tool_calls_json must be a JSON list, got {type(data).__name__}")
    return tuple(tool_call_from_openai(item) for item in data)


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            data = json.loads(text)
        else:
            data = [t for t in (p.strip() for p in text.replace(";", ",").split(",")) if t]
    else:
        data = value
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise ValueError(f"tags must be a JSON list of strings, got {value!r}")
    return tuple(data)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return to_text(value)


def read(path: str | os.PathLike[str]) -> ImportBatch:
    """Read and check a Wilson database; raise :class:`RecordError` listing every problem."""
    path = Path(path).expanduser()
    where_from = str(path.resolve())
    if path.is_file():
        from wilson_core.store.connections import inspect_sqlite

        try:
            is_ours = inspect_sqlite(path)[1]
        except WilsonError:
            is_ours = False  # not SQLite: _open says so
        if is_ours:
            raise RecordError(
                f"{path} is a database of wilson-core itself, not an Open Accountant Wilson data.db; "
                "nothing was imported (open it with --db instead)"
            )
    conn = _open(path)
    try:
        _check_table(conn, path, "llm_interactions", INTERACTION_COLUMNS, required=True)
        has_results = _check_table(conn, path, "llm_tool_results", TOOL_RESULT_COLUMNS, False)
        has_labels = _check_table(conn, path, "interaction_annotations", ANNOTATION_COLUMNS, False)
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        rows = wilson_source.interactions(conn)
        results = wilson_source.tool_results(conn) if has_results else []
        labels = wilson_source.annotations(conn) if has_labels else []
    except sqlite3.DatabaseError as exc:
        raise RecordError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()

    # Ids derive from the data, not from where the file is: a copy imports as the same rows.
    first = min(rows, key=lambda row: row["_rowid"], default=None)
    source = stable_id(
        "wilson-db", *((first["id"], first["created_at"], first["run_id"]) if first is not None else ())
    )
    problems = Problems(str(path))
    batch = ImportBatch(source=where_from)

    # tool results first: later calls of a run see the earlier calls' results.
    results_by_source: dict[str, list[Any]] = defaultdict(list)
    for row in results:
        results_by_source[str(row["interaction_id"])].append(row)

    ids: dict[str, str] = {}  # Wilson interaction id -> ours
    run_steps: dict[str, list[dict[str, Any]]] = defaultdict(list)  # our run id -> earlier turns
    runs: dict[str, Run] = {}
    for row in rows:
        where = f"llm_interactions id={row['id']!r}"
        wilson_id = str(row["id"] if row["id"] is not None else f"rowid:{row['_rowid']}")
        try:
            created_at = iso_time(row["created_at"])
            source_run = str(row["run_id"]).strip() if row["run_id"] is not None else ""
            if source_run.lower() in _SHARED_RUN_IDS:
                run_id = stable_id(source, "run-of", wilson_id)
            else:
                run_id = stable_id(source, "run", source_run)
            earlier = run_steps[run_id]
            sequence = _int_or_none(row["sequence_num"], "sequence_num") or len(earlier) + 1
            tool_calls = _tool_calls(row["tool_calls_json"])
            tools = _tool_defs(row["tool_defs_json"])
            messages: list[dict[str, Any]] = []
            if row["system_prompt"]:
                messages.append({"role": "system", "content": _text(row["system_prompt"])})
            if row["user_prompt"] is not None:
                messages.append({"role": "user", "content": _text(row["user_prompt"])})
            for step in earlier:
                messages.extend(step["messages"])
            input_tokens = _int_or_none(row["input_tokens"], "input_tokens")
            output_tokens = _int_or_none(row["output_tokens"], "output_tokens")
            total = _int_or_none(row["total_tokens"], "total_tokens")
            interaction = Interaction(
                id=stable_id(source, "interaction", wilson_id),
                run_id=run_id,
                sequence_num=sequence,
                call_type=_text(row["call_type"]) or "agent",
                provider=_text(row["provider"]) or "unknown",
                model=_text(row["model"]) or "unknown",
                messages=messages,
                response_content=_text(row["response_content"]),
                tool_calls=tool_calls,
                tools=tools,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=total if total is not None else (
                    input_tokens + output_tokens
                    if input_tokens is not None and output_tokens is not None
                    else None
                ),
                duration_ms=_float(row["duration_ms"], "duration_ms") or 0.0,
                status=_status(row["status"], row["error"]),
                error=_text(row["error"]),
                created_at=created_at,
            )
            # what this call adds to the conversation of the run's next call
            turn: list[dict[str, Any]] = []
            if tool_calls:
                turn.append(
                    {
                        "role": "assistant",
                        "content": interaction.response_content,
                        "tool_calls": [tool_call_message(c) for c in tool_calls],
                    }
                )
            for result_row in results_by_source.get(wilson_id, ()):
                result = _tool_result(source, result_row, interaction, tool_calls)
                batch.tool_results.append(result)
                turn.append(
                    {
                        "role": "tool",
                        "tool_call_id": result.tool_call_id,
                        "name": result.name,
                        "content": result.content,
                    }
                )
        except (ValueError, RecordError, TypeError) as exc:
            problems.add(where, str(exc))
            continue
        ids[wilson_id] = interaction.id
        earlier.append({"messages": turn})
        batch.interactions.append(interaction)
        if run_id not in runs:
            runs[run_id] = Run(
                id=run_id,
                call_type=interaction.call_type,
                started_at=created_at,
                metadata={"imported_from": "wilson-db", "source": where_from, "source_run_id": source_run or None},
            )
        runs[run_id] = _extend(runs[run_id], created_at)
    batch.runs = list(runs.values())
    orphans = sum(len(v) for k, v in results_by_source.items() if k not in ids)
    if orphans:
        batch.skip("tool results of unknown interactions", orphans)

    _read_annotations(source, labels, ids, batch, problems)
    problems.raise_if_any()
    return batch


def _extend(run: Run, created_at: str) -> Run:
    import attrs

    ended = max(run.ended_at or run.started_at, created_at)
    return attrs.evolve(run, started_at=min(run.started_at, created_at), ended_at=ended)


def _tool_result(
    source: str, row: Any, interaction: Interaction, calls: tuple[ToolCall, ...]
) -> ToolResult:
    call_id = _text(row["tool_call_id"]) or ""
    known = next((c for c in calls if c.id == call_id), None)
    raw_args = row["tool_args_json"]
    if raw_args in (None, ""):
        arguments = dict(known.arguments) if known else {}
    else:
        try:
            arguments = json.loads(raw_args)
        except json.JSONDecodeError as exc:
            raise ValueError(f"llm_tool_results id={row['id']!r}: tool_args_json is not JSON ({exc.msg})") from None
        if not isinstance(arguments, dict):
            arguments = {"value": arguments}
    return ToolResult(
        id=stable_id(source, "tool_result", row["id"] if row["id"] is not None else f"rowid:{row['_rowid']}"),
        interaction_id=interaction.id,
        tool_call_id=call_id,
        name=_text(row["tool_name"]) or (known.name if known else ""),
        arguments=arguments,
        content=_text(row["tool_result"]) or "",
        duration_ms=_float(row["duration_ms"], "duration_ms"),
        created_at=iso_time(row["created_at"]),
    )


def _read_annotations(
    source: str, labels: list[Any], ids: dict[str, str], batch: ImportBatch, problems: Problems
) -> None:
    """Label versions (merged state per version) and pairs from ``interaction_annotations``."""
    parsed: list[dict[str, Any]] = []
    for row in labels:
        where = f"interaction_annotations id={row['id']!r}"
        target = ids.get(str(row["interaction_id"]))
        if target is None:
            batch.skip("annotations of unknown interactions")
            continue
        try:
            rating = _int_or_none(row["rating"], "rating")
            if rating is not None and not 1 <= rating <= 5:
                raise ValueError(f"rating must be 1 to 5, got {rating}")
            preference = _text(row["preference"])
            preference = preference.strip().lower() if preference else None
            if preference is not None and preference not in PREFERENCES:
                raise ValueError(f"preference must be one of {', '.join(PREFERENCES)}, got {preference!r}")
            parsed.append(
                {
                    "row_id": row["id"] if row["id"] is not None else f"rowid:{row['_rowid']}",
                    "interaction_id": target,
                    "rating": rating,
                    "preference": preference,
                    "pair_id": _text(row["pair_id"]) or None,
                    "tags": _tags(row["tags"]),
                    "notes": _text(row["notes"]),
                    "created_at": iso_time(row["annotated_at"]),
                }
            )
        except (ValueError, TypeError) as exc:
            problems.add(where, str(exc))

    # pairs: a Wilson pair_id shared by exactly one chosen and one rejected answer.
    latest: dict[str, dict[str, Any]] = {}
    for item in parsed:
        latest[item["interaction_id"]] = {**latest.get(item["interaction_id"], {}), **{
            k: v for k, v in item.items() if v not in (None, ())
        }}
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for state in latest.values():
        if state.get("pair_id"):
            members[state["pair_id"]].append(state)
    pair_of: dict[str, str] = {}
    for wilson_pair, states in members.items():
        chosen = [s for s in states if s.get("preference") == "chosen"]
        rejected = [s for s in states if s.get("preference") == "rejected"]
        if len(states) == 2 and len(chosen) == 1 and len(rejected) == 1:
            pair = Pair(
                id=stable_id(source, "pair", wilson_pair),
                chosen_id=chosen[0]["interaction_id"],
                rejected_id=rejected[0]["interaction_id"],
                created_at=max(s["created_at"] for s in states),
                annotator=ANNOTATOR,
            )
            batch.pairs.append(pair)
            pair_of[pair.chosen_id] = pair.id
            pair_of[pair.rejected_id] = pair.id
        else:
            batch.skip("pair ids without exactly one chosen and one rejected answer")

    # label versions: each row is a version holding the merged state so far.
    state: dict[str, dict[str, Any]] = {}
    for item in parsed:
        target = item["interaction_id"]
        merged = state.setdefault(target, {"version": 0, "rating": None, "preference": None,
                                           "tags": (), "notes": None})
        merged["version"] += 1
        for key in ("rating", "preference", "notes"):
            if item[key] is not None:
                merged[key] = item[key]
        if item["tags"]:
            merged["tags"] = item["tags"]
        batch.annotations.append(
            Annotation(
                id=stable_id(source, "annotation", item["row_id"]),
                interaction_id=target,
                rating=merged["rating"],
                preference=merged["preference"],
                pair_id=pair_of.get(target),
                tags=merged["tags"],
                notes=merged["notes"],
                source="import",
                annotator=ANNOTATOR,
                version=merged["version"],
                created_at=item["created_at"],
            )
        )


def import_wilson_db(store: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``path`` (checked in full first), then write it into ``store`` in one transaction."""
    from wilson_core.importers import write_batch

    return write_batch(store, read(path))
