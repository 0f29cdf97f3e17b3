"""Import simonw/llm's ``logs.db`` (``llm logs path`` prints where it is).

Two schemas, both read (a database upgraded by a newer llm holds both):

- **responses** (llm 0.13 to 0.2x): one row per model call in ``responses``
  (``prompt``, ``system``, ``response``, tokens, ``duration_ms``,
  ``datetime_utc``, ``conversation_id``), fragments in ``prompt_fragments`` /
  ``system_fragments``, tools in ``tool_responses`` / ``tools``, tool calls in
  ``tool_calls`` (on the response that asked) and tool results in
  ``tool_results`` (on the response they were sent to).
- **content-addressed message store** (newer llm): one row per model call in
  ``turns``; messages in ``messages`` (a tree by ``parent_hash``) with their
  ``parts`` (text, reasoning, tool_call, tool_result, attachment; text may be
  stored as fragment references); a turn's context is the chain up to
  ``parent_message_hash`` and its output the messages after it up to
  ``tip_message_hash``; tools in ``turn_tools``.

Every model call becomes an interaction (provider ``llm``), with the full
message list it was given (system prompt, earlier turns of the conversation,
tool calls and results), its response text and tool calls, tools as OpenAI
function schemas, tokens, duration and time.  A conversation (``conversations``
/ ``threads``) becomes a run; tool results become tool results of the
interaction that made the call.  Ids come from llm's own ids, so importing the
same file again (or a newer copy of it) adds only what is new.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wilson_core.errors import RecordError
from wilson_core.importers import ImportBatch, Problems, iso_time, stable_id
from wilson_core.messages import normalize_messages
from wilson_core.records import Interaction, Run, ToolCall, ToolResult
from wilson_core.store import llm_source

PROVIDER = "llm"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def _json(text: Any, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _arguments(value: Any) -> tuple[dict[str, Any], str | None]:
    """Tool call arguments as a dict, and the raw text when they were not a JSON object."""
    if isinstance(value, dict):
        return value, None
    if isinstance(value, str):
        parsed = _json(value, None)
        if isinstance(parsed, dict):
            return parsed, None
        return {}, value
    if value is None:
        return {}, None
    return {}, json.dumps(value, ensure_ascii=False)


def _tool_schema(row: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": row["name"]}
    if row.get("description"):
        function["description"] = row["description"]
    function["parameters"] = _json(row.get("input_schema"), {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


def _output_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": dict(call.arguments)}}


# -- the message store (newer llm) ----------------------------------------------------


class _MessageStore:
    """The message tree of a newer ``logs.db``, loaded once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.parent: dict[str, str | None] = {}
        self.role: dict[str, str] = {}
        for row in conn.execute("SELECT hash, parent_hash, role FROM messages"):
            self.parent[row["hash"]] = row["parent_hash"]
            self.role[row["hash"]] = row["role"]
        fragments: dict[int, str] = {}
        if "fragments" in _tables(conn):
            fragments = {row[0]: row[1] for row in conn.execute("SELECT id, content FROM fragments")}
        self.parts: dict[str, list[dict[str, Any]]] = {}
        for row in conn.execute("SELECT message_hash, position, type, text, payload FROM parts "
                                "ORDER BY message_hash, position"):
            payload = _json(row["payload"], {})
            if not isinstance(payload, dict):
                payload = {}
            payload["type"] = row["type"]
            if row["text"] is not None:
                payload["text"] = row["text"]
            pieces = payload.pop("text_ref", None)
            if isinstance(pieces, list):
                payload["text"] = "".join(
                    str(p.get("literal", "")) if "literal" in p else fragments.get(p.get("fragment"), "")
                    for p in pieces if isinstance(p, dict)
                )
            self.parts.setdefault(row["message_hash"], []).append(payload)

    def chain(self, tip: str | None, stop: str | None = None) -> list[str]:
        """Message hashes from the root (or just after ``stop``) to ``tip``, oldest first."""
        hashes: list[str] = []
        seen: set[str] = set()
        while tip is not None and tip != stop and tip not in seen:
            seen.add(tip)
            hashes.append(tip)
            tip = self.parent.get(tip)
        return hashes[::-1]

    def openai_messages(self, hashes: Iterable[str]) -> list[dict[str, Any]]:
        """OpenAI chat messages for these message rows (a tool message per tool result)."""
        messages: list[dict[str, Any]] = []
        for message_hash in hashes:
            role = self.role.get(message_hash, "user")
            parts = self.parts.get(message_hash, [])
            text = "".join(str(p.get("text") or "") for p in parts if p["type"] == "text")
            if any(p["type"] == "attachment" for p in parts):
                text = (text + " " if text else "") + "[attachment]"
            if role == "tool" or any(p["type"] == "tool_result" for p in parts):
                for part in parts:
                    if part["type"] == "tool_result":
                        messages.append({"role": "tool", "tool_call_id": str(part.get("tool_call_id") or ""),
                                         "name": part.get("name"), "content": _output_text(part.get("output"))})
                continue
            message: dict[str, Any] = {"role": role if role in ("system", "user", "assistant") else "user",
                                       "content": text}
            calls = [self._call(p) for p in parts if p["type"] == "tool_call"]
            if calls and role == "assistant":
                message["tool_calls"] = [_call_dict(c) for c in calls]
                if not text:
                    message["content"] = None
            messages.append(message)
        return messages

    @staticmethod
    def _call(part: dict[str, Any]) -> ToolCall:
        arguments, raw = _arguments(part.get("arguments"))
        return ToolCall(id=str(part.get("tool_call_id") or ""), name=str(part.get("name") or ""),
                        arguments=arguments, raw_arguments=raw)

    def output(self, hashes: list[str]) -> tuple[str | None, tuple[ToolCall, ...]]:
        """The response text and tool calls of the assistant messages among ``hashes``."""
        texts: list[str] = []
        calls: list[ToolCall] = []
        for message_hash in hashes:
            if self.role.get(message_hash) != "assistant":
                continue
            for part in self.parts.get(message_hash, []):
                if part["type"] == "text":
                    texts.append(str(part.get("text") or ""))
                elif part["type"] == "tool_call":
                    calls.append(self._call(part))
        return ("".join(texts) if texts or not calls else None), tuple(calls)


def _read_turns(conn: sqlite3.Connection, batch: ImportBatch, call_type: str, source: str) -> None:
    store = _MessageStore(conn)
    tables = _tables(conn)
    tools_of: dict[str, list[dict[str, Any]]] = {}
    if {"turn_tools", "tools"} <= tables:
        for row in conn.execute("SELECT tt.turn_id, t.name, t.description, t.input_schema FROM turn_tools tt "
                                "JOIN tools t ON t.id = tt.tool_id ORDER BY tt.rowid"):
            tools_of.setdefault(row["turn_id"], []).append(_tool_schema(dict(row)))
    threads = {}
    if "threads" in tables:
        threads = {row["id"]: dict(row) for row in conn.execute("SELECT * FROM threads")}
    turn_columns = _columns(conn, "turns")
    order = "datetime_utc, rowid" if "datetime_utc" in turn_columns else "rowid"
    sequence: dict[str, int] = {}
    calls_by_id: dict[tuple[str, str], tuple[str, ToolCall]] = {}
    run_times: dict[str, list[str]] = {}
    for row in conn.execute(f"SELECT * FROM turns ORDER BY {order}"):
        turn = dict(row)
        thread_id = turn.get("thread_id") or turn["id"]
        run_id = stable_id("llm-logs", "thread", thread_id)
        sequence[run_id] = sequence.get(run_id, 0) + 1
        context = store.chain(turn.get("parent_message_hash"))
        produced = store.chain(turn.get("tip_message_hash"), stop=turn.get("parent_message_hash"))
        messages = store.openai_messages(context)
        text, calls = store.output(produced)
        created_at = iso_time(turn.get("datetime_utc"))
        interaction_id = stable_id("llm-logs", "turn", turn["id"])
        input_tokens, output_tokens = turn.get("input_tokens"), turn.get("output_tokens")
        batch.interactions.append(Interaction(
            id=interaction_id, run_id=run_id, sequence_num=sequence[run_id], call_type=call_type,
            provider=PROVIDER, model=turn.get("resolved_model") or turn.get("model") or "unknown",
            messages=normalize_messages(messages or [{"role": "user", "content": ""}]),
            response_content=text, tool_calls=calls,
            tools=tools_of.get(turn["id"], []), params=_json(turn.get("options_json"), {}) or {},
            input_tokens=input_tokens, output_tokens=output_tokens,
            total_tokens=(input_tokens or 0) + (output_tokens or 0) if input_tokens is not None
            or output_tokens is not None else None,
            duration_ms=float(turn.get("duration_ms") or 0), created_at=created_at,
        ))
        run_times.setdefault(run_id, []).append(created_at)
        for call in calls:
            calls_by_id[(thread_id, call.id)] = (interaction_id, call)
        # tool results sent in this turn's context answer calls of earlier turns of the thread
        for message_hash in context:
            for part in store.parts.get(message_hash, []):
                if part["type"] != "tool_result":
                    continue
                key = (thread_id, str(part.get("tool_call_id") or ""))
                if key not in calls_by_id:
                    continue
                asked_by, call = calls_by_id.pop(key)
                batch.tool_results.append(ToolResult(
                    id=stable_id("llm-logs", "tool_result", thread_id, key[1]),
                    interaction_id=asked_by, tool_call_id=call.id, name=call.name,
                    arguments=dict(call.arguments), content=_output_text(part.get("output")),
                    is_error=bool(part.get("exception")), created_at=created_at,
                ))
    for run_id, times in run_times.items():
        thread_id = next((t for t in threads if stable_id("llm-logs", "thread", t) == run_id), None)
        name = threads.get(thread_id, {}).get("name") if thread_id else None
        batch.runs.append(Run(id=run_id, call_type=call_type, started_at=min(times), ended_at=max(times),
                              metadata={"imported_from": "llm-logs", "source": source,
                                        "llm_thread_id": thread_id, "name": name}))


# -- the responses table (llm 0.13 - 0.2x) ---------------------------------------------


def _grouped(conn: sqlite3.Connection, sql: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(sql):
        grouped.setdefault(row[0], []).append(dict(row))
    return grouped


def _read_responses(conn: sqlite3.Connection, batch: ImportBatch, call_type: str, source: str) -> None:
    tables = _tables(conn)
    columns = _columns(conn, "responses")
    fragments_of: dict[tuple[str, str], list[str]] = {}
    for table, kind in (("prompt_fragments", "prompt"), ("system_fragments", "system")):
        if {table, "fragments"} <= tables:
            for row in conn.execute(f'SELECT pf.response_id, f.content FROM {table} pf '
                                    f'JOIN fragments f ON f.id = pf.fragment_id ORDER BY pf.response_id, pf."order"'):
                fragments_of.setdefault((row[0], kind), []).append(row[1])
    tools_of: dict[str, list[dict[str, Any]]] = {}
    if {"tool_responses", "tools"} <= tables:
        for row in conn.execute("SELECT tr.response_id, t.name, t.description, t.input_schema "
                                "FROM tool_responses tr JOIN tools t ON t.id = tr.tool_id ORDER BY tr.rowid"):
            tools_of.setdefault(row["response_id"], []).append(_tool_schema(dict(row)))
    calls_of = (_grouped(conn, "SELECT response_id, name, arguments, tool_call_id FROM tool_calls ORDER BY id")
                if "tool_calls" in tables else {})
    # (llm's own tool_results table: its SQL lives with the store's, see store/llm_source.py)
    result_columns = llm_source.tool_result_columns(conn) if "tool_results" in tables else set()
    results_of = (_grouped(conn, llm_source.tool_results_sql("exception" in result_columns))
                  if "tool_results" in tables else {})
    names = ({row[0]: row[1] for row in conn.execute("SELECT id, name FROM conversations")}
             if "conversations" in tables else {})
    order = "datetime_utc, rowid" if "datetime_utc" in columns else "rowid"
    history: dict[str, list[dict[str, Any]]] = {}
    sequence: dict[str, int] = {}
    run_times: dict[str, list[str]] = {}
    conversation_of_run: dict[str, str | None] = {}
    pending: dict[str, list[tuple[str, ToolCall]]] = {}
    for row in conn.execute(f"SELECT * FROM responses ORDER BY {order}"):
        response = dict(row)
        response_id = str(response["id"])
        conversation_id = response.get("conversation_id")
        conversation_key = conversation_id or f"response:{response_id}"
        run_id = stable_id("llm-logs", "conversation", conversation_key)
        conversation_of_run[run_id] = conversation_id
        sequence[run_id] = sequence.get(run_id, 0) + 1
        system = "".join(fragments_of.get((response_id, "system"), [])) + (response.get("system") or "")
        prompt = "".join(fragments_of.get((response_id, "prompt"), [])) + (response.get("prompt") or "")
        created_at = iso_time(response.get("datetime_utc"))
        calls = []
        for index, call in enumerate(calls_of.get(response_id, [])):
            arguments, raw = _arguments(call.get("arguments"))
            calls.append(ToolCall(id=str(call.get("tool_call_id") or f"call_{stable_id(response_id, index)[:24]}"),
                                  name=str(call.get("name") or ""), arguments=arguments, raw_arguments=raw))
        # What this call was given: the conversation so far, the tool results sent with it, its prompt.
        sent: list[dict[str, Any]] = []
        waiting = pending.setdefault(conversation_key, [])
        for result in results_of.get(response_id, []):
            # the call it answers: by tool_call_id, or (older plugins log none) the first open call of that name
            result_id = result.get("tool_call_id")
            match = next((w for w in waiting if result_id and w[1].id == result_id), None) or next(
                (w for w in waiting if not result_id and w[1].name == result.get("name")), None)
            call_id = match[1].id if match else str(result_id or "")
            sent.append({"role": "tool", "tool_call_id": call_id,
                         "name": result.get("name"), "content": _output_text(result.get("output"))})
            if match is None:
                batch.skip("tool results answering no logged tool call")
                continue
            waiting.remove(match)
            asked_by, call = match
            batch.tool_results.append(ToolResult(
                id=stable_id("llm-logs", "tool_result", conversation_key, call.id),
                interaction_id=asked_by, tool_call_id=call.id, name=call.name,
                arguments=dict(call.arguments), content=_output_text(result.get("output")),
                is_error=bool(result.get("exception")), created_at=created_at))
        if prompt:
            sent.append({"role": "user", "content": prompt})
        earlier = history.setdefault(run_id, [])
        messages = ([{"role": "system", "content": system}] if system else []) + earlier + sent
        text = response.get("response")
        interaction_id = stable_id("llm-logs", "response", response_id)
        input_tokens = response.get("input_tokens")
        output_tokens = response.get("output_tokens")
        batch.interactions.append(Interaction(
            id=interaction_id, run_id=run_id, sequence_num=sequence[run_id], call_type=call_type,
            provider=PROVIDER, model=response.get("resolved_model") or response.get("model") or "unknown",
            messages=normalize_messages(messages or [{"role": "user", "content": ""}]),
            response_content=text if text or not calls else None, tool_calls=tuple(calls),
            tools=tools_of.get(response_id, []), params=_json(response.get("options_json"), {}) or {},
            input_tokens=input_tokens, output_tokens=output_tokens,
            total_tokens=(input_tokens or 0) + (output_tokens or 0) if input_tokens is not None
            or output_tokens is not None else None,
            duration_ms=float(response.get("duration_ms") or 0), created_at=created_at,
        ))
        run_times.setdefault(run_id, []).append(created_at)
        waiting.extend((interaction_id, call) for call in calls)
        assistant: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            assistant["tool_calls"] = [_call_dict(c) for c in calls]
        earlier.extend(sent)
        earlier.append(assistant)
    for run_id, times in run_times.items():
        conversation_id = conversation_of_run.get(run_id)
        batch.runs.append(Run(id=run_id, call_type=call_type, started_at=min(times), ended_at=max(times),
                              metadata={"imported_from": "llm-logs", "source": source,
                                        "llm_conversation_id": conversation_id,
                                        "name": names.get(conversation_id) if conversation_id else None}))


def read(path: str | os.PathLike[str], *, call_type: str = "chat") -> ImportBatch:
    """Read an llm ``logs.db`` (either schema, or both) without writing to it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RecordError(f"no such file: {path}")
    source = str(path.resolve())
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise RecordError(f"cannot import {path}: not an SQLite database ({exc})") from None
    try:
        if "responses" not in tables and not {"turns", "messages", "parts"} <= tables:
            raise RecordError(f"cannot import {path}: not an llm logs.db (no responses or turns table)")
        batch = ImportBatch(source=source)
        problems = Problems(str(path))
        try:
            if {"turns", "messages", "parts"} <= tables:
                _read_turns(conn, batch, call_type, source)
            if "responses" in tables:
                _read_responses(conn, batch, call_type, source)
        except (sqlite3.DatabaseError, KeyError) as exc:
            problems.add("database", f"unexpected llm schema: {exc}")
        problems.raise_if_any()
        return batch
    finally:
        conn.close()
