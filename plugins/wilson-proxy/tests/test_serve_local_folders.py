"""`wilson serve` on a transformers folder and on a Transformers.js/ONNX deployment folder.

Both are built here from one tiny Llama (wilson_train.tiny) and the ONNX folder by the real
``transformersjs`` deployer; the official openai SDK talks to the real server on localhost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import anthropic
import openai
import pytest
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.serving import provider_spec

from wilson_core.store import open_store

pytest.importorskip("wilson_train", reason="needs wilson-train (tiny models)")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MESSAGES = [{"role": "user", "content": "Categorise: coffee at the station, 3.20 EUR"}]
CHOICES = ["Groceries", "Dining", "Transport"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from wilson_train.tiny import build_tiny_model

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", pretrain_steps=20)


@pytest.fixture(scope="module")
def onnx_folder(tiny_folder, tmp_path_factory) -> Path:
    pytest.importorskip("wilson_onnx", reason="needs wilson-onnx")
    pytest.importorskip("onnxruntime")
    from wilson_onnx.deployer import TransformersJsDeployer

    from wilson_core.interfaces import DeployConfig

    out = tmp_path_factory.mktemp("deploy") / "web"
    report = TransformersJsDeployer().deploy(DeployConfig(model=str(tiny_folder), out=str(out), quant="fp32"))
    return Path(report.out)


@pytest.fixture(scope="module", params=["transformers", "onnx"])
def served(request, tmp_path_factory):
    folder = request.getfixturevalue("tiny_folder" if request.param == "transformers" else "onnx_folder")
    spec = provider_spec(str(folder))
    assert spec == f"{request.param}:{folder}"
    db = tmp_path_factory.mktemp("serve") / "serve.db"
    settings = ProxySettings(upstreams={}, port=0, db=str(db), served_model="tiny",
                             route_flags=(f"local '{spec}'",))
    with RunningProxy(settings) as proxy:
        yield request.param, proxy, db


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def stored(proxy: RunningProxy, db: Path) -> list:
    stats = proxy.wait_recorded(60)
    assert stats["capture_errors"] == 0 and stats["lost"] == 0, stats
    store = open_store(db)
    try:
        return sorted(store.iter_interactions(), key=lambda r: r.created_at)
    finally:
        store.close()


def test_models_lists_the_served_name(served):
    _, proxy, _ = served
    assert [m.id for m in client(proxy).models.list()] == ["tiny"]


def test_streamed_equals_non_streamed_with_usage_and_max_tokens(served):
    provider, proxy, db = served
    app = client(proxy)
    before = len(stored(proxy, db))
    whole = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, seed=1)
    text = whole.choices[0].message.content
    assert text
    assert 0 < whole.usage.completion_tokens <= 6 and whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                              seed=1, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same answer, token by token
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens == whole.usage.completion_tokens
    nucleus = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=1.0,
                                          top_p=1e-6, seed=7)
    assert nucleus.choices[0].message.content == text  # a nucleus of one token: the greedy answer
    short = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, temperature=0)
    assert short.usage.completion_tokens <= 2 and short.choices[0].finish_reason == "length"
    stop = text[len(text) // 2:][:3]  # `stop` ends the reply just before the stop text, streamed or not
    cut = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    chunks = list(app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                              stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text[:text.index(stop)]
    rows = stored(proxy, db)[before:]
    assert [(r.provider, r.status) for r in rows] == [(provider, "ok")] * 6
    assert [r.response_content for r in rows[:2]] == [text, text]
    assert rows[1].ttft_ms is not None and 0 < rows[1].ttft_ms <= rows[1].duration_ms


def test_structured_output_obeys_the_request(served):
    provider, proxy, db = served
    app = client(proxy)
    before = len(stored(proxy, db))
    picked = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0,
                                         extra_body={"guided_choice": CHOICES})
    assert picked.choices[0].message.content in CHOICES
    schema = {"type": "object", "properties": {"category": {"enum": CHOICES}}, "required": ["category"],
              "additionalProperties": False}
    answer = app.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=24, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "category", "schema": schema}})
    assert json.loads(answer.choices[0].message.content)["category"] in CHOICES
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=120)
    message = claude.messages.create(model="tiny", max_tokens=24, messages=MESSAGES,  # Anthropic's structured output
                                     output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(message.content[0].text)["category"] in CHOICES
    rows = stored(proxy, db)[before:]
    assert [(r.provider, r.status) for r in rows] == [(provider, "ok")] * 3


def test_concurrent_requests_do_not_corrupt_each_other(served):
    _, proxy, _ = served
    app = client(proxy)
    asks = [[{"role": "user", "content": f"Categorise: item {i}"}] for i in range(3)]
    alone = [app.chat.completions.create(model="tiny", messages=m, max_tokens=4, temperature=0)
             .choices[0].message.content for m in asks]
    together: list[str | None] = [None] * len(asks)

    def ask(i: int) -> None:
        together[i] = app.chat.completions.create(model="tiny", messages=asks[i], max_tokens=4,
                                                  temperature=0).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone


def test_a_forced_tool_call_comes_back_as_openai_tool_calls(served):
    _, proxy, _ = served
    app = client(proxy)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    forced = {"type": "function", "function": {"name": "lookup"}}
    whole = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0,
                                        tools=tools, tool_choice=forced)
    call = whole.choices[0].message.tool_calls[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.function.name == "lookup"
    assert isinstance(json.loads(call.function.arguments)["q"], str)
    chunks = list(app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0,
                                              tools=tools, tool_choice=forced, stream=True))
    pieces = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert pieces[0].function.name == "lookup"
    assert "".join(p.function.arguments or "" for p in pieces) == call.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_the_serve_command_serves_a_transformers_folder(tiny_folder, tmp_path):
    db = tmp_path / "cli.db"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from wilson_core.cli import main; sys.exit(main())",
                             "--db", str(db), "serve", str(tiny_folder), "--port", "0", "--model-name", "tiny",
                             "--max-tokens", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        while url is None and (line := proc.stdout.readline()):
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            url = found.group(0) if found else None
        assert url, proc.stdout.read() if proc.poll() is not None else "no address printed"
        app = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        reply = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
        assert reply.choices[0].message.content and 0 < reply.usage.completion_tokens <= 4
        with pytest.raises(openai.BadRequestError, match="at most 4 tokens"):  # --max-tokens: the ceiling
            app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5)
    finally:
        proc.terminate()
        proc.wait(30)
    store = open_store(db)
    try:
        rows = list(store.iter_interactions())
    finally:
        store.close()
    assert [(r.provider, r.response_content) for r in rows] == [("transformers", reply.choices[0].message.content)]


def test_a_malformed_stop_is_the_clients_400(served):
    _, proxy, _ = served
    with pytest.raises(openai.BadRequestError, match=r"stop\[0\]: expected a string, got a number"):
        client(proxy).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, stop=[3])


def test_the_anthropic_sdk_gets_the_same_greedy_answer_streamed_and_not(served):
    _, proxy, _ = served
    text = client(proxy).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5,
                                                 temperature=0).choices[0].message.content
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=120)
    message = claude.messages.create(model="tiny", max_tokens=5, messages=MESSAGES)  # greedy by default
    assert message.content[0].text == text and 0 < message.usage.output_tokens <= 5
    with claude.messages.stream(model="tiny", max_tokens=5, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == text
        assert stream.get_final_message().usage.output_tokens == message.usage.output_tokens


def test_the_responses_api_gets_the_same_greedy_answer_streamed_and_not(served):
    provider, proxy, db = served
    app = client(proxy)
    text = app.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5,
                                       temperature=0).choices[0].message.content
    before = len(stored(proxy, db))
    whole = app.responses.create(model="tiny", input=MESSAGES[0]["content"], max_output_tokens=5, temperature=0)
    assert whole.output_text == text and 0 < whole.usage.output_tokens <= 5
    with app.responses.stream(model="tiny", input=MESSAGES[0]["content"], max_output_tokens=5,
                              temperature=0) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    # the last event is response.completed, or response.incomplete when max_output_tokens cut the answer
    # (as OpenAI's; the SDK's get_final_response() then raises, as it does against OpenAI)
    final = events[-1].response
    assert events[-1].type == f"response.{whole.status}" and whole.status in ("completed", "incomplete")
    assert "".join(deltas) == text == final.output_text and len(deltas) > 1
    assert final.usage.output_tokens == whole.usage.output_tokens
    rows = stored(proxy, db)[before:]
    assert [(r.provider, r.status, r.response_content) for r in rows] == [(provider, "ok", text)] * 2
