"""The one text boundary (wilson_core.text, run by every record): whatever text or JSON enters
Wilson (lone surrogates, NUL, RTL marks, 5 MB strings, odd keys and objects) is stored once,
the database stays sound and every view still answers.

Before the boundary, one lone surrogate in run metadata, a model name, request
params, a tool schema or tool-call arguments made the insert fail, then the
spool replay fail the same way, for good.
"""

from __future__ import annotations

import json
import math
import sqlite3
from enum import Enum

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wilson_core import LLM, converter
from wilson_core.records import Annotation, Interaction, ProviderResponse, Run, ToolCall, ToolResult
from wilson_core.store import open_store, sink, spool
from wilson_core.text import TOO_DEEP, clean_json, clean_text

SPECIAL = ["\ud800", "\udfff", "\udc80", "\x00", "\u202e", "\u200f", "\ufeff", "\U0010ffff", "\r"]
CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL))
TEXT = st.text(alphabet=CHARS, max_size=40)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), TEXT
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def is_storable(value) -> bool:
    """Text encodes as UTF-8 without NUL; JSON is plain and re-reads the same."""
    if isinstance(value, str):
        value.encode("utf-8")
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_storable(k) and is_storable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_storable(v) for v in value)
    return value is None or isinstance(value, (bool, int))


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    yield tmp_path / "t.db"
    sink.forget_stores()


# -- the functions -----------------------------------------------------------


def test_clean_text_returns_clean_text_itself_and_mends_the_rest():
    plain = "plain ascii " * 10
    assert clean_text(plain) is plain
    nice = "Café ☕ \u202e日本"
    assert clean_text(nice) is nice
    assert clean_text("a\ud800b\x00c") == "a\ufffdb\ufffdc"
    assert clean_text(b"caf\xc3\xa9 \xff") == "café \ufffd"


class Color(Enum):
    RED = 1


def test_clean_json_makes_plain_json_of_anything():
    deep: list = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]
    cyclic: dict = {}
    cyclic["self"] = cyclic
    value = {
        "k\ud800": {1: "one", None: "none", 2.5: "x"},
        "nan": math.nan,
        "enum": Color.RED,
        "set": {3, 1},
        "bytes": b"\xff",
        "deep": deep,
        "cycle": cyclic,
    }
    cleaned = clean_json(value)
    assert is_storable(cleaned)
    assert cleaned["k\ufffd"] == {"1": "one", "null": "none", "2.5": "x"}
    assert cleaned["nan"] == "nan" and cleaned["set"] == [1, 3] and cleaned["bytes"] == "\ufffd"
    assert TOO_DEEP in json.dumps(cleaned["deep"]) and TOO_DEEP in json.dumps(cleaned["cycle"])
    clean = {"a": [1, "b", {"c": None}]}
    assert clean_json(clean) is clean  # nothing to do: nothing copied


@given(JSON, TEXT)
@settings(max_examples=200, deadline=None)
def test_every_record_field_is_storable_whatever_it_is_given(value, text):
    records = [
        Interaction(run_id=text, sequence_num=1, call_type=text, provider=text, model=text,
                    messages=[{"role": "user", "content": text, text: value}], tools=[{"x": value}],
                    params={text: value}, response_content=text, error=text,
                    tool_calls=[ToolCall(id=text, name=text, arguments={text: value}, raw_arguments=text)]),
        ToolResult(tool_call_id=text, name=text, content=text, arguments={text: value}),
        Run(call_type=text, metadata={text: value, "v": value}),
        Annotation(interaction_id=text, tags=[text], notes=text, corrected_response=text),
        ProviderResponse(content=text, model=text),
    ]
    for record in records:
        data = converter.unstructure(record)
        assert is_storable(data), record
        # the spool's round trip gives the same record back
        again = converter.structure(json.loads(json.dumps(data, ensure_ascii=False)), type(record))
        assert again == record


# -- through the facade into the database ----------------------------------------


def _views_answer(store, ids):
    from wilson_core.cli.capture import collect_stats

    assert store.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for interaction_id in ids:
        stored = store.get_interaction(interaction_id)
        assert is_storable(converter.unstructure(stored))
    stats = collect_stats(store)
    assert stats["capture"]["spooled_pending"] == 0
    return stats


@given(metadata=JSON, text=TEXT, params=st.dictionaries(TEXT, JSON, max_size=3), args=JSON)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_anything_the_app_or_provider_sends_is_captured_once(db, metadata, text, params, args):
    tool = {"type": "function", "function": {"name": "f" + text, "parameters": {"x": args}}}
    replies = [
        ProviderResponse(content=text, model="m" + text,
                         tool_calls=[ToolCall(id="c" + text, name="f" + text, arguments={"a": args},
                                              raw_arguments=text or None)]),
        {"content": None, "tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": text}}]},
    ]
    llm = LLM("scripted:m" + text, db=str(db), script=replies, cycle=True)
    ids = []
    with llm.run(call_type="agent" + text, metadata={"m": metadata}) as run:
        reply = run.chat([{"role": "system", "content": text}, {"role": "user", "content": text,
                                                               "name": text}], tools=[tool], **params)
        ids.append(reply.interaction_id)
        for call in reply.tool_calls:
            run.record_tool_result(call, {"out": args, text: text})
        ids.append(run.chat([{"role": "user", "content": [{"type": "text", "text": text}]}]).interaction_id)
    assert llm.capture_failures == 0
    store = sink.store_for(str(db))
    _views_answer(store, ids)
    count = store.connection().execute(
        f"SELECT count(*) FROM interactions WHERE id IN ({','.join('?' * len(ids))})", ids
    ).fetchone()[0]
    assert count == len(ids)
    assert spool.pending(store.path) == 0


def test_a_lone_surrogate_in_run_metadata_no_longer_poisons_capture(db):
    """The reported repro: metadata ``{"u": "a\\ud800"}`` then any chat."""
    llm = LLM("scripted:m", db=str(db), script=["ok"], cycle=True)
    with llm.run(metadata={"u": "a\ud800"}) as run:
        first = run.chat([{"role": "user", "content": "hi"}])
    second = llm.chat([{"role": "user", "content": "again"}])
    store = open_store(db)
    assert store.get_interaction(first.interaction_id).run_id == first.run_id
    assert store.get_interaction(second.interaction_id)
    row = store.connection().execute("SELECT metadata_json FROM runs WHERE id = ?", (first.run_id,)).fetchone()
    assert json.loads(row[0]) == {"u": "a\ufffd"}
    assert not list(spool.spool_paths(db)[0].parent.glob("*.spool.jsonl*"))


def test_five_megabyte_texts_with_bad_characters_are_stored(db):
    big = ("x" * 1000 + "\ud800\x00é\u202e") * 5000  # about 5 MB
    llm = LLM("scripted:m", db=str(db), script=[big], cycle=True)
    reply = llm.chat([{"role": "user", "content": big}], big_param=big)
    stored = open_store(db).get_interaction(reply.interaction_id)
    assert stored.response_content == clean_text(big) == stored.messages[-1]["content"]
    assert len(stored.response_content) == len(big)


def test_text_written_into_the_file_by_something_else_reads_back_clean(db):
    store = open_store(db)
    record = Interaction(run_id="r", sequence_num=1, call_type="a", provider="p", model="m",
                         messages=[{"role": "user", "content": "hi"}])
    store.write_interaction(record)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE interactions SET response_content = ?", ("x\x00y",))
    conn.commit()
    conn.close()
    assert store.get_interaction(record.id).response_content == "x\ufffdy"


def test_a_spool_poisoned_by_an_earlier_version_replays_and_the_views_answer(db):
    """Earlier versions spooled lone surrogates as raw bytes; the replay failed for good and
    ``wilson stats`` / ``runs`` crashed.  Now the line is read, cleaned by the record and stored."""
    import subprocess
    import sys

    open_store(db).close()
    sink.forget_stores()
    record = Interaction(run_id="r", sequence_num=1, call_type="agent", provider="p", model="m",
                         messages=[{"role": "user", "content": "hi"}], id="0" * 32)
    data = converter.unstructure(record)
    data["params"] = {"u": "a\ud800"}
    data["model"] = "m\udfff"
    line = json.dumps({"kind": "interaction", "record": data}, ensure_ascii=False)
    spool_file = spool.spool_paths(db)[0]
    spool_file.write_bytes(line.encode("utf-8", "surrogatepass") + b"\n")
    stuck = spool_file.with_name(spool_file.name + ".replaying-999999")
    spool_file.rename(stuck)  # as the failed replay of an earlier version left it
    for command in (["stats", "--json"], ["runs"], ["show", "0" * 32, "--json"]):
        done = subprocess.run([sys.executable, "-m", "wilson_core.cli", "--db", str(db), *command],
                              capture_output=True, text=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    shown = json.loads(done.stdout)
    assert shown["model"] == "m\ufffd" and shown["params"] == {"u": "a\ufffd"}
    assert not stuck.exists() and spool.pending(db) == 0
