"""The store on both backends: everything here runs on an SQLite file and on a real PostgreSQL server.

The PostgreSQL server is started by the tests themselves (tests/postgres_server.py).
Exports from the same data must be byte-identical on both, ``wilson db copy``
moves a store both ways, capture spools while the server is down and replays
when it is back, and many writers on two "hosts" lose nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from wilson_core import annotations, open_store
from wilson_core.exporting import ExportOptions, count_records, run_export
from wilson_core.exporting.writer import eval_path
from wilson_core.records import Annotation, Interaction, Run, ToolCall, ToolResult
from wilson_core.store import search
from wilson_core.store.copying import copy_store
from wilson_core.store.writing import Batch

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look up a value.",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def call(n: int, run: str = "run-a", **extra) -> Interaction:
    messages = [{"role": "system", "content": "You are careful."}, {"role": "user", "content": f"question {n} über café"}]
    return Interaction(run_id=run, sequence_num=n, call_type=extra.pop("call_type", "agent"), provider="scripted",
                       model=extra.pop("model", "m1"), messages=messages,
                       response_content=extra.pop("response_content", f"answer {n} 🍰"), tools=TOOLS, **extra)


def test_capture_reads_back_and_is_idempotent(store_location):
    store = open_store(store_location)
    first = call(1, tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": "x"})], response_content=None)
    second = call(2, params={"temperature": 0.2}, input_tokens=10, output_tokens=3, total_tokens=13, ttft_ms=12.5)
    store.write_interaction(first)
    store.write_interactions([first, second])
    store.write_tool_results([ToolResult(interaction_id=first.id, tool_call_id="c1", name="lookup",
                                         arguments={"q": "x"}, content="42")] * 2)
    store.write_run(Run(id="run-a", call_type="agent", ended_at="2030-01-01T00:00:00+00:00", metadata={"k": 1}))
    assert [store.count(t) for t in ("interactions", "runs", "tool_results", "blobs")] == [2, 1, 1, 2]
    assert store.get_interaction(first.id) == first and store.get_interaction(second.id) == second
    assert [i.id for i in store.run_interactions("run-a")] == [first.id, second.id]
    assert store.get_run("run-a").ended_at == "2030-01-01T00:00:00+00:00"
    assert store.get_run("run-a").metadata == {"k": 1}
    assert store.tool_results(first.id)[0].content == "42"
    assert store.integrity_check() == "ok"


def test_content_addressed_ids_and_hashes_are_the_same_on_both_backends(tmp_path, pg_url):
    rows = []
    calls = [call(1), call(2)]
    for location in (str(tmp_path / "a.db"), pg_url):
        store = open_store(location)
        store.write_interactions(calls)
        conn = store.connection()
        rows.append([tuple(r) for r in conn.execute(
            "SELECT id, system_hash, tools_hash, context_hash, messages_json FROM interactions ORDER BY rowid")])
        rows.append([tuple(r) for r in conn.execute("SELECT hash, kind, content FROM blobs ORDER BY hash")])
        store.close()
    assert rows[0] == rows[2] and rows[1] == rows[3]


def test_the_batch_write_counts_new_rows_and_adds_nothing_twice(store_location):
    store = open_store(store_location)
    one, two = call(1), call(2)
    label = Annotation(interaction_id=one.id, rating=4, tags=("a", "b"))
    batch = Batch(runs=[Run(id="run-a", call_type="agent")], interactions=[one, two], annotations=[label],
                  counters={"spooled": 2})
    assert store.write_batch(batch) == {"runs": 1, "interactions": 2, "tool_results": 0, "annotations": 1, "pairs": 0}
    assert store.write_batch(batch)["interactions"] == 0
    assert store.counters()["spooled"] == 4
    assert annotations.effective_label(store, one.id).tags == ("a", "b")


def test_captured_records_are_written_in_order_in_one_transaction(store_location):
    """The background writer's batch: a run's start, its calls, a tool result and its end."""
    store = open_store(store_location)
    started = Run(id="run-b", call_type="agent", started_at="2030-01-01T00:00:00+00:00")
    first = call(1, run="run-b", tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": "x"})],
                 response_content=None)
    result = ToolResult(interaction_id=first.id, tool_call_id="c1", name="lookup", arguments={"q": "x"}, content="7")
    lone = call(9, run="run-lone")  # a call outside any run record: its run row comes with it
    ended = Run(id="run-b", call_type="agent", started_at=started.started_at, ended_at="2030-01-01T00:00:05+00:00",
                metadata={"user": "u1"})
    records = [started, first, result, call(2, run="run-b"), lone, ended]
    store.write_captures(records)
    store.write_captures(records)  # idempotent, as a replay after a cut-short batch must be
    assert [store.count(t) for t in ("interactions", "runs", "tool_results")] == [3, 2, 1]
    assert store.get_run("run-b").ended_at == ended.ended_at and store.get_run("run-b").metadata == {"user": "u1"}
    assert store.get_interaction(first.id) == first
    assert store.tool_results(first.id)[0].content == "7"
    assert store.get_run("run-lone") is not None
    store.close()


def test_labels_pairs_undo_and_the_label_that_counts(store_location):
    store = open_store(store_location)
    a, b, c = call(1, run="r1"), call(1, run="r2", response_content="other"), call(3, run="r3")
    store.write_interactions([a, b, c])
    annotations.rate(store, a.id, 5, tags=["good"])
    annotations.annotate(store, a.id, notes="kept")
    assert annotations.current(store, a.id).rating == 5 and annotations.current(store, a.id).notes == "kept"
    annotations.rate(store, b.id, 1)
    pair = annotations.pair(store, a.id, b.id)
    assert annotations.get_pair(store, pair.id).chosen_id == a.id
    assert [p.id for p in annotations.pairs_of(store, b.id)] == [pair.id]
    annotations.undo_pair(store, pair.id)
    assert annotations.pairs_of(store, b.id) == []
    harvested = annotations.harvest_pairs(store)
    assert [(p.chosen_id, p.rejected_id) for p in harvested] == [(a.id, b.id)]
    annotations.annotate(store, c.id, rating=2, source="judge", annotator="judge:x", status="proposed")
    assert [p.interaction_id for p in annotations.pending_proposals(store)] == [c.id]
    assert annotations.effective_label(store, c.id) is None
    assert annotations.effective_label(store, c.id, include_judge=True).rating == 2
    annotations.accept(store, [c.id])
    assert annotations.pending_proposals(store) == []
    annotations.rate(store, c.id, 4)
    annotations.undo(store, c.id)
    assert annotations.effective_label(store, c.id) is None
    assert annotations.effective_label(store, c.id, include_judge=True).status == "accepted"
    assert len(annotations.history(store, c.id)) == 3
    assert annotations.alternatives(store, a.id) == [b.id]


def test_full_text_search_on_both_backends(store_location):
    store = open_store(store_location)
    store.write_interactions([call(1), call(2, response_content="Groceries: 212.40 EUR")])
    ids = [i.id for i in store.run_interactions("run-a")]
    assert search.search(store, "groceries") == [ids[1]]
    assert search.search(store, "groc*") == [ids[1]]
    assert sorted(search.search(store, "question")) == sorted(ids)
    assert search.search(store, "question \"nothing") == []
    assert search.search(store, "') OR 1=1 --") == []


def test_search_folds_accents_and_case_alike_on_both_backends(store_location):
    """SQLite's index folds diacritics (unicode61 remove_diacritics 2); PostgreSQL's does the same (m009)."""
    store = open_store(store_location)
    texts = ["Café CRÈME at the façade", "naïve Ångström", "Łódź søster Straße", "plain words"]
    store.write_interactions([call(n, response_content=text) for n, text in enumerate(texts)])
    ids = {c.response_content: c.id for c in store.run_interactions("run-a")}

    def found(query: str) -> list[str]:
        return sorted(search.search(store, query))

    for query in ("cafe creme", "CAFÉ crème", "cafe facade", "CRÈ*", "crem*", "facad*"):
        assert found(query) == [ids[texts[0]]], query
    assert found("naive angstrom") == found("NAÏVE ÅNGSTRÖM") == [ids[texts[1]]]
    # letters with no decomposed accent (ł, ø, ß) are kept as they are, on both backends
    assert found("łódź") == found("łodz") == found("søster straße") == [ids[texts[2]]]
    assert found("lodz") == found("soster") == found("strasse") == []
    assert len(found("uber")) == len(texts)  # every prompt says "über"


def _sample(tmp_path: Path):
    samples = pytest.importorskip("wilson_exporters.samples")
    return samples.build_sample_store(tmp_path / "sample.db")


EXPORTS = [
    {"format": "sft"},
    {"format": "sft", "min_rating": 4},
    {"format": "sft", "granularity": "run"},
    {"format": "sft", "tags": ["tools"], "providers": ["openai"]},
    {"format": "sft", "min_rating": 5, "include_judge": True},
    {"format": "sft", "call_types": ["summarize", "categorize"], "models": ["gpt-4o-mini", "llama3.2"]},
    {"format": "sft", "since": "2000-01-01", "until": "2999-01-01", "eval_split": 0.5, "seed": 3},
    {"format": "sft", "dedup": True},
    {"format": "dpo"},
    {"format": "dpo", "harvest_pairs": True},
    {"format": "kto"},
    {"format": "openai-chat"},
]


def test_exports_are_byte_identical_across_backends_and_db_copy_round_trips(tmp_path, pg_url):
    sqlite_store, _ = _sample(tmp_path)
    pg_store = open_store(pg_url)
    report = copy_store(sqlite_store, pg_store)
    assert report["interactions"]["copied"] == report["interactions"]["source"] == sqlite_store.count()
    assert report["annotations"]["target"] == sqlite_store.count("annotations")
    back = open_store(tmp_path / "back.db")
    copy_store(pg_store, back)
    again = copy_store(sqlite_store, pg_store)  # idempotent: nothing new
    assert all(counts["copied"] == 0 for name, counts in again.items() if name != "capture_counters")
    for number, options in enumerate(EXPORTS):
        texts = []
        for name, store in (("sqlite", sqlite_store), ("postgresql", pg_store), ("back", back)):
            out = tmp_path / f"{number}-{name}.jsonl"
            run_export(store, ExportOptions(**options), out)
            text = out.read_bytes()
            eval_file = eval_path(out)
            lines = len(text.splitlines())
            if eval_file.exists():
                lines += len(eval_file.read_bytes().splitlines())
                text += b"--eval--\n" + eval_file.read_bytes()
            texts.append(text)
            assert count_records(store, ExportOptions(**options)) == lines
        assert texts[0] == texts[1] == texts[2], options
        assert texts[0], options


def test_the_cli_works_on_a_postgresql_url(tmp_path, pg_url):
    env = {**os.environ, "WILSON_DB": pg_url}
    store = open_store(pg_url)
    store.write_interactions([call(1), call(2)])
    ids = [i.id for i in store.run_interactions("run-a")]

    def wilson(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "wilson_core.cli", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    runs = wilson("runs", "--json")
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout)[0]["calls"] == 2
    assert wilson("show", ids[0]).returncode == 0
    stats = json.loads(wilson("stats", "--json").stdout)
    assert stats["interactions"] == 2 and stats["tokens"]["total"] == 0
    rated = wilson("annotate", "rate", ids[0], "5")
    assert rated.returncode == 0, rated.stderr
    out = tmp_path / "x.jsonl"
    exported = wilson("export", "sft", "--min-rating", "5", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
    copied = wilson("db", "copy", pg_url, str(tmp_path / "copy.db"), "--json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["interactions"] == {"source": 2, "copied": 2, "target": 2}
    bad = wilson("runs", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "cannot connect" in bad.stderr


def test_migrations_on_a_blank_database_and_on_the_previous_version(pg_url):
    import psycopg

    from wilson_core.store import pg_schema
    from wilson_core.store.postgres import Connection

    conn = Connection(pg_url)
    assert pg_schema.migrate(conn, upto="m007_add_interaction_ttft")[-1] == "m007_add_interaction_ttft"
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("INSERT INTO interactions (id, run_id, sequence_num, messages_json, response_content, "
                    "created_at) VALUES ('old', 'r', 1, '[]', 'Café crème', '2026-01-01')")
        raw.execute("INSERT INTO annotations (id, interaction_id, rating, created_at) VALUES ('l', 'old', 3, 'x')")
    assert pg_schema.migrate(conn, upto="m008_create_effective_labels_view") == ["m008_create_effective_labels_view"]
    store = open_store(pg_url)
    assert pg_schema.applied(store.connection()) == pg_schema.names()
    assert annotations.effective_label(store, "old").rating == 3
    # m009: rows indexed before it are found without their accents too (the index was rebuilt)
    assert search.search(store, "cafe creme") == search.search(store, "Café") == ["old"]
    from wilson_core.store.schema import migrations

    assert pg_schema.names() == [m.name for m in migrations._migrations]


def _capture_host(url: str, host: int, processes: int, threads: int, calls: int) -> None:
    """One "host": its own process tree, each process with its own connections."""
    procs = [multiprocessing.get_context("spawn").Process(target=_capture_process, args=(url, host, p, threads, calls))
             for p in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(p.exitcode)


def _capture_process(url: str, host: int, process: int, threads: int, calls: int) -> None:
    from wilson_core import LLM

    def work(thread: int) -> None:
        llm = LLM("scripted:m", db=url, script=lambda messages, tools: "ok")
        for n in range(calls):
            llm.chat([{"role": "user", "content": f"h{host} p{process} t{thread} n{n}"}], call_type="load")
        assert not llm.capture_failures

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_many_writers_on_two_hosts_while_two_reviewers_label(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    store = open_store(pg_url)
    seed = call(1)
    store.write_interaction(seed)
    hosts = [multiprocessing.get_context("spawn").Process(target=_capture_host, args=(pg_url, h, 2, 4, 15))
             for h in range(2)]
    for h in hosts:
        h.start()

    def review(name: str, stars: int) -> None:
        reviewer = open_store(pg_url)
        for _ in range(10):
            annotations.rate(reviewer, seed.id, stars, annotator=name)
            annotations.rate(reviewer, seed.id, stars, annotator="shared")

    reviewers = [threading.Thread(target=review, args=(n, s)) for n, s in (("ann", 2), ("bob", 5))]
    for r in reviewers:
        r.start()
    for r in reviewers:
        r.join()
    for h in hosts:
        h.join()
        assert h.exitcode == 0
    assert store.count() == 1 + 2 * 2 * 4 * 15
    prompts = {row[0] for row in store.connection().execute("SELECT user_prompt FROM interactions")}
    assert len(prompts) == store.count()
    versions = [v.annotation for v in annotations.history(store, seed.id) if v.annotation.annotator == "shared"]
    assert sorted(a.version for a in versions) == list(range(1, 21))  # no version lost or doubled
    newest = max(versions, key=lambda a: a.version)
    assert annotations.current(store, seed.id, annotator="shared").rating == newest.rating
    # both reviewers' own streams survive, and the label written last is the one that counts
    labels = annotations.current_labels(store, seed.id)
    assert {a.annotator for a in labels} == {"ann", "bob", "shared"}
    last = max(labels, key=lambda a: (a.created_at, a.version))
    assert annotations.effective_label(store, seed.id).id == last.id
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_capture_spools_while_the_server_is_down_and_replays(postgres_server, pg_url, tmp_path, monkeypatch):
    from wilson_core import LLM
    from wilson_core.store import sink

    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "0")
    monkeypatch.setenv("WILSON_PG_CONNECT_TIMEOUT", "1")
    sink.forget_stores()
    llm = LLM("scripted:m", db=pg_url, script=lambda messages, tools: "ok")
    llm.chat([{"role": "user", "content": "before"}])
    postgres_server.stop()
    try:
        for n in range(3):
            reply = llm.chat([{"role": "user", "content": f"while down {n}"}])
            assert reply.content == "ok"  # the app's call is not affected
        assert list((tmp_path / "spool").glob("postgresql-*.spool.jsonl"))
    finally:
        postgres_server.start()
    llm.chat([{"role": "user", "content": "after"}])
    sink.forget_stores()
    store = open_store(pg_url)
    prompts = sorted(row[0] for row in store.connection().execute("SELECT user_prompt FROM interactions"))
    assert prompts == ["after", "before", "while down 0", "while down 1", "while down 2"]
    assert store.counters()["replayed"] == 3
    assert not list((tmp_path / "spool").glob("*.spool.jsonl"))


def test_the_dashboard_reads_the_same_on_both_backends(store_location):
    queries = pytest.importorskip("wilson_dashboard.queries")
    store = open_store(store_location)
    calls = [call(n, model=f"m{n % 2}", response_content=f"answer {n} groceries" if n % 3 == 0 else f"answer {n}")
             for n in range(1, 13)]
    store.write_interactions(calls)
    annotations.rate(store, calls[0].id, 5, tags=["good"])
    annotations.rate(store, calls[1].id, 2, tags=["bad"])
    annotations.annotate(store, calls[2].id, rating=4, source="judge", annotator="judge:x", status="proposed")
    annotations.accept(store, [calls[2].id])
    annotations.annotate(store, calls[3].id, rating=1, source="judge", annotator="judge:x", status="proposed")
    conn = store.connection()
    Filters = queries.Filters
    assert queries.count(conn, Filters()) == 12
    assert queries.count(conn, Filters(), queries.ANNOTATED_SQL) == 3
    assert queries.count(conn, Filters(), queries.PROPOSED_SQL) == 1
    assert queries.count(conn, Filters(min_rating=4)) == 2
    assert queries.count(conn, Filters(models=("m1",))) == 6
    assert queries.count(conn, Filters(tag="good")) == 1
    assert queries.count(conn, Filters(judge="accepted")) == 1
    search.sync(store)  # (the app syncs the SQLite index before a search; PostgreSQL keeps its own)
    assert queries.count(conn, Filters(q="groceries")) == 4
    assert {i["id"] for i in queries.page(conn, Filters(q="grocer*"))["items"]} == {calls[n - 1].id for n in (3, 6, 9, 12)}
    for sort in queries.SORTS:
        seen, cursor = [], None
        while True:
            page = queries.page(conn, Filters(sort=sort), cursor=cursor, limit=5)
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(c.id for c in calls), sort
    first = queries.page(conn, Filters(sort="rating_desc"), limit=3)["items"]
    assert [item["label"]["rating"] for item in first] == [5, 4, 2]
    assert first[1]["label"]["source"] == "judge"
    facets = queries.facets(conn)
    assert facets["models"] == ["m0", "m1"] and facets["tags"] == ["bad", "good"]


CAPTURE_ROLE_GRANTS = """
CREATE ROLE {role} LOGIN;
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON wilson_migrations TO {role};
GRANT INSERT ON interactions, blobs, tool_results TO {role};
GRANT SELECT, INSERT, UPDATE ON runs, capture_counters TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
"""


def test_a_capture_only_role_can_insert_but_not_read(pg_url, tmp_path, monkeypatch):
    """The grants docs/capture.md gives an app server's role: it captures, it cannot read prompts."""
    import psycopg

    from wilson_core import LLM
    from wilson_core.store import sink

    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    open_store(pg_url).close()  # the schema is made by an owner (here: the test's superuser)
    role = f"capture_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(CAPTURE_ROLE_GRANTS.format(role=role))
    app_url = pg_url.replace("postgres@", f"{role}@")
    sink.forget_stores()
    llm = LLM("scripted:m", db=app_url, script=["one", "two"])
    with llm.run(call_type="agent") as run:
        run.chat([{"role": "user", "content": "hello"}])
        run.chat([{"role": "user", "content": "again"}], tools=TOOLS)
    assert not llm.capture_failures
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    with psycopg.connect(app_url) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT user_prompt FROM interactions").fetchall()
    assert open_store(pg_url).count() == 2


def test_the_store_s_sqlite_dialect_runs_on_postgresql(pg_url):
    """Placeholders, literals with % and ?, INSERT OR IGNORE and json_each, as the store writes them."""
    from wilson_core.store.postgres import Connection

    conn = Connection(pg_url)
    assert conn.execute("SELECT 'a%b' LIKE ?", ("a%",)).fetchone()[0] is True
    assert conn.execute("SELECT 'a%b' LIKE 'a%'").fetchone()[0] is True
    assert conn.execute("SELECT 5 % 3").fetchone()[0] == 2
    assert conn.execute("SELECT :x || '%'", {"x": "q"}).fetchone()[0] == "q%"
    assert conn.execute("SELECT 'it''s ?: :not_a_param'").fetchone()[0] == "it's ?: :not_a_param"
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, tags TEXT)")
    assert conn.execute("INSERT OR IGNORE INTO t (id, tags) VALUES (?, ?)", ("a", '["x", "y"]')).rowcount == 1
    assert conn.execute("INSERT OR IGNORE INTO t (id, tags) VALUES (?, ?)", ("a", "[]")).rowcount == 0
    row = conn.execute("SELECT t.id, j.value FROM t, json_each(t.tags) j WHERE j.value = ?", ("y",)).fetchone()
    assert (row["id"], row[1], dict(row)) == ("a", "y", {"id": "a", "value": "y"})
    assert conn.execute("SELECT sum(1), count(*) FROM t").fetchone() == (1, 1)  # not Decimal


def test_an_interrupted_db_copy_is_resumed_by_running_it_again(tmp_path, pg_url):
    source, _ = _sample(tmp_path)
    target = open_store(pg_url)

    def interrupt(table: str, rows: int) -> None:
        if table == "interactions" and rows >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(source, target, progress=interrupt, batch_size=2)
    assert 0 < target.count() < source.count() and target.count("annotations") == 0
    report = copy_store(source, target, batch_size=2)
    assert report["interactions"]["copied"] == source.count() - 4
    for table in ("blobs", "runs", "interactions", "tool_results", "pairs", "annotations"):
        assert report[table]["target"] == report[table]["source"] > 0, table
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run_export(source, ExportOptions(format="dpo"), out_a)
    run_export(target, ExportOptions(format="dpo"), out_b)
    assert out_a.read_bytes() == out_b.read_bytes() != b""


def test_a_server_that_hangs_does_not_hold_the_app_and_nothing_is_lost(pg_url, tmp_path, monkeypatch):
    """A table locked by someone else (a long migration, a stuck transaction): capture gives up
    after the busy timeout, spools, and replays once the lock is gone."""
    import time

    import psycopg

    from wilson_core import LLM
    from wilson_core.store import sink

    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("WILSON_BUSY_TIMEOUT_MS", "500")
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "0")
    sink.forget_stores()
    llm = LLM("scripted:m", db=pg_url, script=lambda messages, tools: "ok")
    llm.chat([{"role": "user", "content": "first"}])
    blocker = psycopg.connect(pg_url)
    blocker.execute("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.perf_counter()
        assert llm.chat([{"role": "user", "content": "while locked"}]).content == "ok"
        assert time.perf_counter() - started < 5
        assert list((tmp_path / "spool").glob("postgresql-*.spool.jsonl"))
    finally:
        blocker.rollback()
        blocker.close()
    llm.chat([{"role": "user", "content": "after"}])
    store = open_store(pg_url)
    prompts = sorted(row[0] for row in store.connection().execute("SELECT user_prompt FROM interactions"))
    assert prompts == ["after", "first", "while locked"]
    sink.forget_stores()


def test_a_record_postgresql_refuses_is_quarantined_and_the_spool_replays(pg_url, tmp_path, monkeypatch):
    """A record the server refuses for good (here a trigger's check_violation) goes to the
    quarantine file; the records spooled with it are replayed, not held behind it."""
    from wilson_core import LLM
    from wilson_core.store import sink

    store = open_store(pg_url)
    conn = store.connection()
    conn.execute(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.call_type = 'poison' THEN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; "
        "END IF; RETURN NEW; END $$"
    )
    conn.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON interactions "
                 "FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
    store.close()
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("WILSON_CAPTURE_RETRY_S", "60")  # after the refusal, the next calls are spooled too
    sink.forget_stores()
    llm = LLM("scripted:m", db=pg_url, script=lambda messages, tools: "ok")
    llm.chat([{"role": "user", "content": "poisoned"}], call_type="poison")
    for n in range(3):
        assert llm.chat([{"role": "user", "content": f"good {n}"}]).content == "ok"
    assert list((tmp_path / "spool").glob("postgresql-*.spool.jsonl"))
    sink.forget_stores()
    store = open_store(pg_url)  # opening replays the spool
    prompts = sorted(row[0] for row in store.connection().execute("SELECT user_prompt FROM interactions"))
    assert prompts == ["good 0", "good 1", "good 2"]
    assert store.counters()["quarantined"] == 1
    assert not list((tmp_path / "spool").glob("*.spool.jsonl"))
    kept = list((tmp_path / "spool").glob("*.quarantine.jsonl"))
    assert len(kept) == 1 and "poisoned" in kept[0].read_text()
