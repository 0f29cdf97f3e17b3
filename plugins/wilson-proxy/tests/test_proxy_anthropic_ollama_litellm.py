"""The anthropic SDK, LiteLLM and Ollama's /api/chat through `wilson proxy` against a real local upstream."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from wilson_core.testing.upstreams import Scripted

TOOL = {
    "name": "lookup_merchant",
    "description": "Find a merchant's category",
    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
}


def claude(proxied) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxied.url, api_key="sk-ant-secret", max_retries=0)


def test_anthropic_messages_create_with_tool_use(proxied):
    proxied.upstream.push(Scripted(text="Let me look.", tool_calls=[("lookup_merchant", {"name": "TESCO"})]))
    reply = claude(proxied).messages.create(
        model="claude-haiku-4-5", max_tokens=100, system="You categorise transactions.", tools=[TOOL],
        messages=[{"role": "user", "content": "TESCO 12.00 GBP"}])
    assert [block.type for block in reply.content] == ["text", "tool_use"]
    (stored,) = proxied.stored(1)
    assert stored.provider == "anthropic" and stored.status == "ok" and stored.model == "claude-haiku-4-5"
    assert stored.messages[0] == {"role": "system", "content": "You categorise transactions."}
    assert stored.response_content == "Let me look."
    assert [(c.name, c.arguments) for c in stored.tool_calls] == [("lookup_merchant", {"name": "TESCO"})]
    assert stored.tools[0]["function"]["name"] == "lookup_merchant"
    headers = {k.lower(): v for k, v in proxied.upstream.requests[-1].headers.items()}
    assert "sk-ant-secret" in (headers.get("x-api-key") or headers.get("authorization", ""))  # untouched
    assert proxied.upstream.requests[-1].path == "/v1/messages"


def test_anthropic_messages_stream(proxied):
    proxied.upstream.push(Scripted(text="Groceries, as usual.", piece=6, fragment=3, input_tokens=50, output_tokens=9,
                                   tool_calls=[("lookup_merchant", {"name": "TESCO EXTRA"})]))
    with claude(proxied).messages.stream(model="claude-haiku-4-5", max_tokens=100, tools=[TOOL],
                                         messages=[{"role": "user", "content": "TESCO 12.00"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Groceries, as usual."
    assert final.content[-1].input == {"name": "TESCO EXTRA"}
    (stored,) = proxied.stored(1)
    assert stored.response_content == "Groceries, as usual." and stored.status == "ok"
    assert stored.tool_calls[0].arguments == {"name": "TESCO EXTRA"}
    assert (stored.input_tokens, stored.output_tokens) == (50, 9) and stored.ttft_ms is not None


def test_anthropic_error_reaches_the_sdk_in_its_shape(proxied):
    proxied.upstream.push(Scripted(status=429, error="slow down"))
    with pytest.raises(anthropic.RateLimitError):
        claude(proxied).messages.create(model="claude-haiku-4-5", max_tokens=10,
                                        messages=[{"role": "user", "content": "hi"}])
    (stored,) = proxied.stored(1)
    assert stored.status == "error" and "slow down" in stored.error


def test_ollama_chat_ndjson_stream_and_non_streamed(proxied):
    proxied.upstream.push(Scripted(text="Bills and utilities", fragment=5), Scripted(text="Rent"))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "EDF ENERGY 60.00"}]}
    lines = []
    with httpx.stream("POST", proxied.url + "/api/chat", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert "".join(line["message"]["content"] for line in lines) == "Bills and utilities"
    answer = httpx.post(proxied.url + "/api/chat", json={**body, "stream": False}, timeout=30).json()
    assert answer["message"]["content"] == "Rent"
    streamed, plain = proxied.stored(2)
    assert (streamed.provider, streamed.response_content, streamed.status) == ("ollama", "Bills and utilities", "ok")
    assert streamed.ttft_ms is not None
    assert (plain.response_content, plain.status) == ("Rent", "ok")


def test_litellm_through_the_proxy(proxied):
    litellm = pytest.importorskip("litellm")
    proxied.upstream.push(Scripted(text="Entertainment"), Scripted(text="Travel abroad", fragment=4))
    reply = litellm.completion(model="openai/gpt-4o-mini", api_base=proxied.openai_url, api_key="sk-lite",
                               messages=[{"role": "user", "content": "NETFLIX 9.99"}])
    assert reply.choices[0].message.content == "Entertainment"
    chunks = litellm.completion(model="openai/gpt-4o-mini", api_base=proxied.openai_url, api_key="sk-lite",
                                messages=[{"role": "user", "content": "RYANAIR 45.00"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Travel abroad"
    plain, streamed = proxied.stored(2)
    assert plain.response_content == "Entertainment" and streamed.response_content == "Travel abroad"
    assert plain.messages[-1]["content"] == "NETFLIX 9.99"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50, "stream": True,
                          "messages": [{"role": "user", "content": "TESCO ✓"}]}),
        ("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "TESCO ✓"}]}),
    ],
    ids=["anthropic-sse", "ollama-ndjson"],
)
def test_streams_are_relayed_byte_for_byte(proxied, path, body):
    scripted = Scripted(text="Grocëries — fine", piece=5, fragment=2, serial=11,
                        tool_calls=[("lookup_merchant", {"name": "TESCO"})])
    proxied.upstream.push(scripted, scripted)
    answers = []
    for base in (proxied.upstream.url, proxied.url):
        with httpx.stream("POST", base + path, json=body, timeout=30) as response:
            answers.append(b"".join(response.iter_raw()))
    assert answers[0] == answers[1] and len(answers[1]) > 100
    (stored,) = proxied.stored(1)
    assert stored.response_content == "Grocëries — fine" and stored.tool_calls[0].arguments == {"name": "TESCO"}
