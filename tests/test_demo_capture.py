"""The demo's app is captured as real apps are, and switched without a code change.

Real components throughout: the official ``openai`` SDK, the demo's teacher
behind a real HTTP server, Wilson's drop-in client writing a real SQLite file,
and ``wilson proxy`` started as a user starts it, in its own process, with a
``[tool.wilson.proxy]`` file changed while it runs.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")

from wilson_core.demo import agent, app, finance, routing  # noqa: E402
from wilson_core.demo.teacher import teacher  # noqa: E402
from wilson_core.demo.teacher_server import TeacherServer  # noqa: E402


def _rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_the_teacher_server_answers_what_the_teacher_answers_streamed_or_not():
    lines = [line for line, _ in finance.transactions(12, seed=5)]
    expected = teacher(5)
    with TeacherServer(seed=5) as cloud:
        clients = app.connect(cloud.openai_url)
        try:
            got = [app.categorise(clients.categoriser, line, stream=n % 2 == 0) for n, line in enumerate(lines)]
        finally:
            clients.close()
    assert got == [expected(finance.categorise_messages(line), None) for line in lines]
    assert any(len(answer.split()) > 3 for answer in got), "the teacher is wordy now and then"


def test_the_same_seed_gives_the_same_agent_runs_tool_call_ids_included(tmp_path):
    def agent_runs(db: Path) -> list[tuple]:
        with TeacherServer(seed=2) as cloud:
            clients = app.connect(cloud.openai_url, capture_db=db)
            try:
                for question in agent.questions()[:3]:
                    app.ask(clients.assistant, question.text)
            finally:
                clients.close()
        return _rows(db, "SELECT sequence_num, response_content, tool_calls_json FROM interactions "
                         "ORDER BY rowid")

    first, second = agent_runs(tmp_path / "a.db"), agent_runs(tmp_path / "b.db")
    assert first == second and len(first) >= 6


def test_the_app_is_captured_through_the_openai_wrapper_streams_with_ttft_and_tool_results_linked(tmp_path):
    db = tmp_path / "app.db"
    with TeacherServer(seed=0) as cloud:
        clients = app.connect(cloud.openai_url, capture_db=db)
        try:
            for number, (line, _) in enumerate(finance.transactions(8, seed=0)):
                app.categorise(clients.categoriser, line, stream=number % 4 == 0)
            answers = [app.ask(clients.assistant, q.text) for q in agent.questions()[:2]]
        finally:
            clients.close()
    assert all("EUR" in answer for answer in answers)  # answered in words, from the tool results
    categorised = _rows(db, "SELECT provider, model, status, ttft_ms, input_tokens, output_tokens FROM interactions "
                            "WHERE call_type = 'categorize' ORDER BY rowid")
    assert len(categorised) == 8
    assert {(p, m, s) for p, m, s, *_ in categorised} == {("openai", "cloud-teacher", "ok")}
    streamed = [row[3] for row in categorised]
    assert [t is not None for t in streamed] == [n % 4 == 0 for n in range(8)]  # ttft only where streamed
    assert all(row[4] and row[5] for row in categorised)  # usage, streamed ones too (include_usage)
    runs = _rows(db, "SELECT run_id, count(*), group_concat(sequence_num) FROM interactions "
                     "WHERE call_type = 'agent' GROUP BY run_id")
    assert len(runs) == 2 and all(count == 2 and seqs == "1,2" for _, count, seqs in runs)
    assert all(t is not None for (t,) in _rows(db, "SELECT ttft_ms FROM interactions WHERE call_type = 'agent'"))
    linked = _rows(db, "SELECT r.tool_call_id, i.sequence_num, i.tool_calls_json FROM tool_results r "
                       "JOIN interactions i ON i.id = r.interaction_id")
    assert len(linked) == 2
    for call_id, sequence, calls in linked:
        assert sequence == 1 and call_id in calls  # linked to the turn that asked for the tool


def test_the_same_app_is_switched_by_the_proxy_routes_shadow_then_local(tmp_path):
    db = tmp_path / "data.db"
    script = tmp_path / "tuned.jsonl"
    script.write_text('"Groceries"\n', encoding="utf-8")  # the "tuned model": always the same category
    settings = tmp_path / "pyproject.toml"
    lines = list(finance.transactions(8, seed=9))
    provider, options = "scripted:tuned", {"script": str(script), "cycle": True}
    with TeacherServer(seed=9) as cloud:
        routing.write_config(settings, cloud.openai_url, provider, "shadow", options)
        with routing.ProxyProcess(db, settings, tmp_path / "proxy.log") as proxy:
            clients = app.connect(proxy.url + "/v1")  # the plain SDK: the proxy records
            try:
                shadow = routing.use_app(clients, lines)
                proxy.wait_shadows()
                proxy.wait_recorded()
                agreement = routing.shadow_agreement(db, "scripted")
                routing.write_config(settings, cloud.openai_url, provider, "local", options)
                proxy.wait_mode("local")
                local = routing.use_app(clients, lines)
                proxy.wait_recorded()
                route = proxy.route()
            finally:
                clients.close()
    teacher_said = [a["answer"] for a in shadow["answers"]]
    cloud_teacher = teacher(9)
    assert teacher_said == [cloud_teacher(finance.categorise_messages(line), None).strip() for line, _ in lines]
    assert agreement["pairs"] == 8
    assert agreement["agreed"] == sum(answer == "Groceries" for answer in teacher_said)
    assert (agreement["stats"]["pairs"], agreement["stats"]["exact_match"]) == (8, agreement["agreed"])  # wilson stats
    assert [a["answer"] for a in local["answers"]] == ["Groceries"] * 8
    assert route["mode"] == "local" and route["counts"]["answered_locally"] == 8
    by_provider = dict(_rows(db, "SELECT provider, count(*) FROM interactions GROUP BY provider"))
    assert by_provider == {"openai": 8, "scripted": 16}  # the teacher's 8; 8 in shadow, 8 answering the app
    streamed = _rows(db, "SELECT ttft_ms FROM interactions WHERE provider = 'scripted' AND ttft_ms IS NOT NULL")
    assert len(streamed) == 2  # one in four calls streamed, through the local route too
    assert "routes reloaded" in (tmp_path / "proxy.log").read_text()


def test_without_the_openai_sdk_the_demo_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['openai'] = None\n"
            "from wilson_core.cli import main\n"
            f"sys.exit(main(['demo', '--fast', '--data-only', '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert result.returncode != 0
    assert "pip install 'wilson-core[openai]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "data.db").exists()


def test_without_the_proxy_plugin_the_demo_says_what_to_install_before_it_starts(tmp_path):
    code = ("import sys; sys.modules['wilson_proxy'] = None\n"
            "from wilson_core.cli import main\n"
            f"sys.exit(main(['demo', '--fast', '--out', {str(tmp_path / 'out')!r}]))")
    env = {k: v for k, v in os.environ.items() if k != "WILSON_STRICT_PLUGINS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "pip install wilson-proxy" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "data.db").exists()


def test_the_route_file_names_the_upstream_and_one_route_and_only_the_mode_changes(tmp_path):
    from wilson_proxy.routes import load_routes, read_config

    path = tmp_path / "pyproject.toml"
    routing.write_config(path, "http://127.0.0.1:1/v1", 'llamacpp:/models/a "b".gguf', "shadow", {"n_ctx": 512})
    shadow = path.read_text()
    (route,) = load_routes(path)
    assert (route.name, route.mode, route.provider, route.call_type) == (
        routing.ROUTE, "shadow", 'llamacpp:/models/a "b".gguf', "categorize")
    assert route.options == {"n_ctx": 512} and read_config(path)["upstreams"] == {"openai": "http://127.0.0.1:1/v1"}
    routing.write_config(path, "http://127.0.0.1:1/v1", 'llamacpp:/models/a "b".gguf', "local", {"n_ctx": 512})
    changed = [(a, b) for a, b in zip(shadow.splitlines(), path.read_text().splitlines(), strict=True) if a != b]
    assert changed == [('mode = "shadow"', 'mode = "local"')]
    assert load_routes(path)[0].mode == "local"
