"""Provider drivers against a real local HTTP server (OpenAI chat-completions and Ollama /api/chat)."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import wilson_core
from wilson_core.errors import ProviderError
from wilson_core.records import STATUS_ERROR
from wilson_core.store import open_store, sink

TOOLS = [{"type": "function", "function": {"name": "get_balance", "parameters": {"type": "object"}}}]


class FakeLLMServer:
    """A small but real HTTP server speaking both wire protocols.

    It answers with a tool call when the last message is from the user and
    with text after a tool result; ``mode`` switches to failure answers.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.mode = "normal"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                if server.mode == "http500":
                    return self._send(500, {"error": "overloaded"})
                if self.path == "/v1/chat/completions":
                    return self._send(200, server.openai_answer(body))
                if self.path == "/api/chat":
                    return self._send(200, server.ollama_answer(body))
                return self._send(404, {"error": "not found"})

            def _send(self, status, data):
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def openai_answer(self, body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            message = {"role": "assistant", "content": f"Balance: {last['content']}"}
        else:
            arguments = '{"account": ' if self.mode == "malformed" else '{"account": "checking"}'
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_9", "type": "function",
                                "function": {"name": "get_balance", "arguments": arguments}}],
            }
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"] + "-2025",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
        }

    def ollama_answer(self, body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            message = {"role": "assistant", "content": f"Balance: {last['content']}"}
        else:
            message = {"role": "assistant", "content": "",
                       "tool_calls": [{"function": {"name": "get_balance",
                                                    "arguments": {"account": "savings"}}}]}
        return {"model": body["model"], "message": message, "done": True,
                "prompt_eval_count": 15, "eval_count": 4}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeLLMServer()
    yield s
    s.close()


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    yield tmp_path / "data.db"
    sink.forget_stores()


def ask():
    return [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Balance?"}]


def test_openai_provider_round_trip_with_tool_calls(server, db):
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url=server.url + "/v1", api_key="k")
    with llm.run() as run:
        first = run.chat(ask(), tools=TOOLS, temperature=0)
        [call] = first.tool_calls
        assert (call.id, call.name, call.arguments) == ("call_9", "get_balance", {"account": "checking"})
        run.record_tool_result(call, "120 EUR")
        second = run.chat(ask() + [first.message, {"role": "tool", "tool_call_id": "call_9",
                                                   "content": "120 EUR"}], tools=TOOLS)
    assert second.text == "Balance: 120 EUR"
    assert (first.input_tokens, first.output_tokens, first.total_tokens) == (21, 7, 28)
    assert first.model == "gpt-test-2025"
    path, body = server.requests[1]
    assert path == "/v1/chat/completions"
    assert body["tools"] == TOOLS and body["model"] == "gpt-test"
    # on the wire, tool call arguments are JSON text as the API expects
    sent_call = body["messages"][2]["tool_calls"][0]
    assert json.loads(sent_call["function"]["arguments"]) == {"account": "checking"}
    assert server.requests[0][1]["temperature"] == 0
    stored = open_store(db).run_interactions(run.id)
    assert [i.provider for i in stored] == ["openai", "openai"]
    assert stored[0].tool_calls[0].arguments == {"account": "checking"}


def test_openai_provider_async(server, db):
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url=server.url + "/v1")

    async def app():
        return await llm.achat(ask(), tools=TOOLS)

    reply = asyncio.run(app())
    assert reply.tool_calls[0].name == "get_balance"


def test_malformed_tool_call_json_from_the_provider_is_kept_raw(server, db):
    server.mode = "malformed"
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url=server.url + "/v1")
    reply = llm.chat(ask(), tools=TOOLS)
    [call] = reply.tool_calls
    assert call.arguments == {} and call.raw_arguments == '{"account": '
    [stored] = open_store(db).run_interactions(reply.run_id)
    assert stored.tool_calls[0].raw_arguments == '{"account": '
    assert stored.tool_calls[0].malformed


def test_an_http_error_is_recorded_as_a_failed_call(server, db):
    server.mode = "http500"
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url=server.url + "/v1")
    with pytest.raises(ProviderError, match="HTTP 500"):
        llm.chat(ask())
    [row] = open_store(db).iter_interactions()
    assert row.status == STATUS_ERROR and "HTTP 500" in row.error


def test_an_unreachable_endpoint_is_a_clear_provider_error(db):
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url="http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(ProviderError, match="cannot reach"):
        llm.chat(ask())


def test_ollama_provider_round_trip_with_tool_calls(server, db):
    llm = wilson_core.LLM("ollama:wilson-finance", db=str(db), host=server.url)
    with llm.run() as run:
        first = run.chat(ask(), tools=TOOLS, temperature=0.3, max_tokens=64)
        [call] = first.tool_calls
        assert call.arguments == {"account": "savings"}
        run.record_tool_result(call, "300 EUR")
        second = run.chat(ask() + [first.message, {"role": "tool", "tool_call_id": call.id,
                                                   "name": "get_balance", "content": "300 EUR"}])
    assert second.text == "Balance: 300 EUR"
    assert (first.input_tokens, first.output_tokens) == (15, 4)
    path, body = server.requests[0]
    assert path == "/api/chat" and body["stream"] is False and body["tools"] == TOOLS
    assert body["options"] == {"temperature": 0.3, "num_predict": 64}
    sent = server.requests[1][1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == {"account": "savings"}
    assert sent[3]["tool_name"] == "get_balance"
    assert len(open_store(db).run_interactions(run.id)) == 2


def test_ollama_provider_async(server, db):
    llm = wilson_core.LLM("ollama:m", db=str(db), host=server.url)
    reply = asyncio.run(llm.achat(ask()))
    assert reply.tool_calls[0].name == "get_balance"


def test_scripted_provider_reads_a_jsonl_script_and_says_when_it_runs_out(tmp_path, db):
    script = tmp_path / "replies.jsonl"
    script.write_text(json.dumps("first") + "\n" + json.dumps({"content": "second"}) + "\n")
    llm = wilson_core.LLM("scripted:demo", db=str(db), script=str(script))
    assert llm.chat(ask()).text == "first"
    assert llm.chat(ask()).text == "second"
    with pytest.raises(ProviderError, match="ran out"):
        llm.chat(ask())


def test_scripted_provider_with_a_function_is_deterministic(db):
    llm = wilson_core.LLM("scripted:demo", db=str(db),
                          script=lambda messages, tools: messages[-1]["content"].upper())
    assert llm.chat(ask()).text == "BALANCE?"


def test_scripted_provider_reports_a_broken_script_line(tmp_path):
    script = tmp_path / "replies.jsonl"
    script.write_text('"ok"\n{broken\n')
    with pytest.raises(ProviderError, match=r"replies.jsonl:2"):
        wilson_core.LLM("scripted:demo", script=str(script))


def test_openai_provider_works_across_event_loops(server, db):
    llm = wilson_core.LLM("openai:gpt-test", db=str(db), base_url=server.url + "/v1")
    for _ in range(2):  # e.g. two asyncio.run() calls in one app
        assert asyncio.run(llm.achat(ask())).tool_calls
