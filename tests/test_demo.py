"""The README's main job: ``wilson demo`` takes the finance agent around the whole loop.

Run here with ``--fast`` (a tiny base built on the spot); every stage is the real
one.  The default mode, on SmolLM2-135M, is run by ``test_readme_command.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

needs = ("wilson_train", "wilson_gguf", "wilson_onnx", "wilson_ollama", "wilson_exporters")
STAGES = ("Capture", "Annotate", "Export", "Base model", "Train", "Evaluate", "Deploy", "Switch")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    for module in needs:
        pytest.importorskip(module)
    root = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", "demo", "--fast", "--runs", "4"],
        cwd=root, capture_output=True, text=True, timeout=1800, env=env,
    )
    return root / "wilson-demo", result


def test_the_fast_demo_runs_every_stage_into_a_new_folder_and_exits_zero(demo_run):
    out, result = demo_run
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    for number, stage in enumerate(STAGES, start=1):
        assert f"[{number}/8] {stage}" in result.stdout
    assert "The loop is closed" in result.stdout
    assert out.is_dir() and (out / "summary.md").is_file()


def test_the_app_is_captured_through_the_openai_sdk_wrapper_streams_and_tools_included(demo_run):
    out, result = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    capture, shadow = summary["capture"], summary["switch"]["shadow"]["calls"]
    assert "wilson_core.integrations.openai.OpenAI(base_url=" in result.stdout
    with sqlite3.connect(out / "data.db") as conn:
        by_type = dict(conn.execute(
            "SELECT call_type, count(*) FROM interactions WHERE provider = 'openai' AND model = 'cloud-teacher' "
            "GROUP BY call_type"
        ))
        streamed = conn.execute("SELECT count(*) FROM interactions WHERE provider = 'openai' "
                                "AND call_type = 'categorize' AND ttft_ms IS NOT NULL").fetchone()[0]
        agent_ttft = conn.execute("SELECT count(ttft_ms), count(*) FROM interactions WHERE provider = 'openai' "
                                  "AND call_type = 'agent'").fetchone()
        tool_results = conn.execute("SELECT count(*) FROM tool_results WHERE interaction_id IS NOT NULL").fetchone()[0]
        agent_runs = conn.execute("SELECT count(*) FROM runs WHERE call_type = 'agent'").fetchone()[0]
    # the 120 asked, recorded by the wrapper (the review's retries are the dashboard's, provider "scripted"),
    # then the teacher's answers in the switch's shadow step, recorded by the proxy
    assert capture["categorisations"] == 120 and by_type["categorize"] == 120 + shadow
    # one in four streamed, each with its time to first token (in both stages)
    assert capture["streamed"] == 30 and streamed == 30 + shadow // 4
    assert agent_runs == 4 and by_type["agent"] >= 8  # a tool call, then the answer
    assert agent_ttft[0] == agent_ttft[1]  # every agent turn streamed
    assert tool_results >= 4  # recorded from the next request's role "tool" messages


def test_the_review_rates_retries_corrects_and_pairs_through_the_annotation_api(demo_run):
    out, _ = demo_run
    labels = json.loads((out / "demo-summary.json").read_text())["annotate"]
    assert labels["rated"] > 120 and labels["regenerated"] > 0
    assert labels["corrected"] > 0 and labels["pairs"] > 0
    with sqlite3.connect(out / "data.db") as conn:
        pairs = conn.execute("SELECT count(*) FROM pairs WHERE undone_at IS NULL").fetchone()[0]
    assert pairs == labels["pairs"]


def test_the_exports_are_trl_shaped_redacted_and_never_hold_the_heldout_transactions(demo_run):
    out, _ = demo_run
    export = out / "export"
    sft = [json.loads(line) for line in (export / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(line) for line in (export / "dpo.jsonl").read_text().splitlines()]
    assert sft and dpo and (export / "sft.eval.jsonl").read_text().strip()
    assert {"prompt", "chosen", "rejected"} <= set(dpo[0])
    everything = "".join(p.read_text() for p in export.glob("*.jsonl"))
    assert "4111 1111 1111 1111" not in everything and "jane.doe@example.com" not in everything
    trained = {m["content"] for row in sft for m in row["messages"] if m["role"] == "user"}
    for name in ("seen-merchants", "new-merchants"):
        heldout = [json.loads(line) for line in (out / "heldout" / f"{name}.jsonl").read_text().splitlines()]
        assert heldout
        assert not trained & {m["content"] for row in heldout for m in row["messages"] if m["role"] == "user"}


def test_the_tuned_model_beats_the_base_and_every_answer_obeys_the_category_enum(demo_run):
    out, result = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    scores = summary["eval"]
    seen = scores["seen-merchants"]
    # the issue's --fast check: the tuned tiny model beats the base on seen merchants as the
    # app runs it, with its category enum enforced (and in free decoding, where the base
    # rarely answers a bare category)
    assert seen["tuned"] > seen["base"], scores
    assert seen["unconstrained"]["tuned"] > seen["unconstrained"]["base"], scores
    report = json.loads((out / "eval.json").read_text())
    for label in ("base", "tuned"):
        assert report["constrained"]["models"][label]["constraint_valid"] == 1.0, report["constrained"]
    assert report["models"]["base"]["constraint_valid"] < 1.0  # free, the base rarely answers a bare category
    assert set(scores) == {"seen-merchants", "new-merchants"}
    assert all(0 < by_model["teacher"] < 1 for by_model in scores.values()), scores
    assert summary["misses"] == [] and "MISSED" not in result.stdout


def test_every_deployment_is_written_and_the_runtime_checks_passed(demo_run):
    out, _ = demo_run
    deploy = json.loads((out / "demo-summary.json").read_text())["deploy"]
    assert deploy["gguf"]["passed"] and deploy["gguf"]["checks"], deploy
    assert all(deploy["gguf"]["checks"].values())
    assert deploy["transformersjs"]["passed"] and all(deploy["transformersjs"]["checks"].values())
    assert any("Transformers.js" in name or "transformers.js" in name.lower()
               for name in deploy["transformersjs"]["checks"]), deploy["transformersjs"]
    assert (out / "deploy" / "ollama" / "Modelfile").read_text().startswith("FROM ")
    assert (out / "deploy" / "transformersjs" / "onnx" / "model.onnx").is_file()


def test_the_switch_goes_through_wilson_proxy_shadow_then_local_with_the_app_unchanged(demo_run):
    out, result = demo_run
    switch = json.loads((out / "demo-summary.json").read_text())["switch"]
    assert switch["provider"].startswith("llamacpp:")
    shadow, local = switch["shadow"], switch["local"]
    assert shadow["route"]["mode"] == "shadow" and local["route"]["mode"] == "local"
    assert shadow["calls"] == shadow["pairs"] == local["calls"] == 8  # --fast: 8 calls in each step
    assert 0 <= shadow["agreed"] <= shadow["pairs"] and shadow["agreement"] == round(shadow["agreed"] / 8, 3)
    assert local["route"]["counts"]["answered_locally"] == 8
    with sqlite3.connect(out / "data.db") as conn:
        local_calls = conn.execute("SELECT count(*) FROM interactions WHERE provider = 'llamacpp'").fetchone()[0]
        shadow_runs = conn.execute("SELECT count(*) FROM runs WHERE metadata_json LIKE '%shadow_of%'").fetchone()[0]
    assert local_calls == switch["captured"] == 16 and local["captured"] == 8 and shadow_runs == 8
    config = (out / "switch" / "pyproject.toml").read_text()
    assert 'mode = "local"' in config and "routes reloaded" in (out / "switch" / "proxy.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "- Switched with no app change, by `wilson proxy` routes" in summary
    assert "  - shadow: 8 calls answered by the teacher" in summary and "  - local: 8 calls answered by llamacpp" in summary
    assert f"wilson --db {out / 'data.db'} dashboard" in result.stdout


def test_a_second_demo_never_reuses_a_database(demo_run, tmp_path):
    out, _ = demo_run
    again = subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", "demo", "--fast", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode != 0
    assert "exists" in again.stderr and "Traceback" not in again.stderr


def test_without_node_the_demo_still_closes_the_loop_through_pytorch(tmp_path):
    for module in needs:
        pytest.importorskip(module)
    bin_only = str(Path(sys.executable).parent)  # python and wilson, but no node on PATH
    env = {**os.environ, "PATH": bin_only, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "no-node"
    result = subprocess.run([sys.executable, "-m", "wilson_core.cli", "demo", "--fast", "--runs", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=1800, env=env)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    assert "Node.js (node) is not on PATH" in result.stdout
    summary = json.loads((out / "demo-summary.json").read_text())
    assert set(summary["deploy"]) == {"gguf", "ollama"}
    assert "Node.js (node) is not on PATH" in summary["skipped"][0]
    assert "- Skipped (optional runtime missing): " in (out / "summary.md").read_text()
    assert summary["switch"]["provider"] == f"transformers:{out / 'model' / 'merged'}"
    assert summary["switch"]["captured"] == 16 and summary["switch"]["local"]["captured"] == 8
