"""Wire protocol converters: requests, responses and streams cut anywhere.

The stream samples are written out by hand in each API's documented shape
(not produced by :mod:`wilson_core.testing.upstreams`), so the converters are
checked against the formats, not against our own renderer.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wilson_core.protocols import (
    PROTOCOLS,
    NDJSONDecoder,
    ProtocolError,
    SSEDecoder,
    anthropic,
    for_path,
    ollama,
    openai_chat,
    openai_responses,
)


def sse(*events):
    out = []
    for event in events:
        name, data = event if isinstance(event, tuple) else (None, event)
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return "".join(out).encode()


def chunk(delta, finish=None, **extra):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


OPENAI_STREAM = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Checking "}),
    chunk({"content": "both ✓"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"loc"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ation\": \"Pa"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function",
                           "function": {"name": "get_time", "arguments": "{\"tz\":"}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": " \"CET\"}"}}]}),
    chunk({}, "tool_calls"),
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [],
     "usage": {"prompt_tokens": 82, "completion_tokens": 40, "total_tokens": 122}},
    "[DONE]",
)

ANTHROPIC_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 2, "cache_read_input_tokens": 28}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "let me check ✓"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 89}}),
    ("message_stop", {"type": "message_stop"}),
)

RESPONSES_STREAM = sse(
    ("response.created", {"type": "response.created", "sequence_number": 0, "response": {
        "id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-4.1", "output": []}}),
    ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                                    "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
                                    "output_index": 0, "content_index": 0, "delta": "Let me "}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1",
                                    "output_index": 0, "content_index": 0, "delta": "look."}),
    ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 4, "output_index": 1,
                                    "item": {"id": "fc_1", "type": "function_call", "call_id": "call_X",
                                             "name": "get_weather", "arguments": ""}}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "sequence_number": 5, "item_id": "fc_1", "output_index": 1,
                                                "delta": "{\"location\": \"Par"}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "sequence_number": 6, "item_id": "fc_1", "output_index": 1,
                                                "delta": "is\"}"}),
    ("response.completed", {"type": "response.completed", "sequence_number": 7, "response": {
        "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4.1-2025",
        "output": [
            {"id": "msg_1", "type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
            {"id": "fc_1", "type": "function_call", "call_id": "call_X", "name": "get_weather",
             "arguments": "{\"location\": \"Paris\"}"}],
        "usage": {"input_tokens": 36, "output_tokens": 87, "total_tokens": 123}}}),
)

OLLAMA_STREAM = b"".join(json.dumps(line).encode() + b"\n" for line in [
    {"model": "qwen3", "created_at": "2025-05-27T22:54:57Z", "message": {"role": "assistant", "content": "Sure, "}, "done": False},
    {"model": "qwen3", "created_at": "2025-05-27T22:54:57Z", "message": {"role": "assistant", "content": "checking ✓"}, "done": False},
    {"model": "qwen3", "created_at": "2025-05-27T22:54:58Z", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Toronto"}}}]},
     "done": False},
    {"model": "qwen3", "created_at": "2025-05-27T22:54:58Z", "message": {"role": "assistant", "content": ""},
     "done_reason": "stop", "done": True, "total_duration": 1, "prompt_eval_count": 217, "eval_count": 38},
])[:-1]  # Ollama's last line may come without a newline

STREAMS = {
    "openai-chat": (OPENAI_STREAM, "Checking both ✓", [("call_A", "get_weather", {"location": "Paris"}),
                                                       ("call_B", "get_time", {"tz": "CET"})], (82, 40)),
    "anthropic": (ANTHROPIC_STREAM, "Okay, let me check ✓",
                  [("toolu_1", "get_weather", {"location": "San Francisco, CA"})], (500, 89)),
    "openai-responses": (RESPONSES_STREAM, "Let me look.", [("call_X", "get_weather", {"location": "Paris"})], (36, 87)),
    "ollama": (OLLAMA_STREAM, "Sure, checking ✓", [(None, "get_current_weather",
                                                    {"format": "celsius", "location": "Toronto"})], (217, 38)),
}


def assemble(name, data, cuts=()):
    assembler = PROTOCOLS[name].Assembler()
    start = 0
    for cut in sorted(set(cuts)):
        assembler.feed_bytes(data[start:cut])
        start = cut
    assembler.feed_bytes(data[start:])
    return assembler.result()


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_documented_streams_assemble(name):
    data, text, calls, usage = STREAMS[name]
    result = assemble(name, data)
    assert result.status == "ok" and result.error is None
    assert result.content == text
    assert [(c.name, c.arguments) for c in result.tool_calls] == [(n, a) for _, n, a in calls]
    for call, (expected_id, _, _) in zip(result.tool_calls, calls, strict=True):
        assert call.id == expected_id if expected_id else call.id.startswith("call_")
    assert (result.input_tokens, result.output_tokens) == usage


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_streams_cut_anywhere_assemble_the_same(data):
    name = data.draw(st.sampled_from(sorted(STREAMS)))
    stream = STREAMS[name][0]
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=40))
    assert assemble(name, stream, cuts) == assemble(name, stream)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_stream_cut_short_is_incomplete_with_what_came(data):
    name = data.draw(st.sampled_from(sorted(STREAMS)))
    stream = STREAMS[name][0]
    last = {"openai-chat": b'"tool_calls"}]', "anthropic": b"message_stop",
            "openai-responses": b"response.completed", "ollama": b'"done": true'}[name]
    end = data.draw(st.integers(min_value=0, max_value=stream.index(last)))  # before the last event
    result = PROTOCOLS[name].Assembler()
    result.feed_bytes(stream[:end])
    partial = result.result("connection dropped")
    assert partial.status == "incomplete" and partial.error == "connection dropped"
    assert STREAMS[name][1].startswith(partial.content or "")


def test_partial_tool_arguments_are_kept_raw():
    cut = OPENAI_STREAM.index(b"ation")
    assembler = openai_chat.Assembler()
    assembler.feed_bytes(OPENAI_STREAM[: OPENAI_STREAM.index(b"\n\n", cut) + 2])
    result = assembler.result("abandoned")
    assert result.status == "incomplete"
    [call] = result.tool_calls
    assert call.arguments == {} and call.raw_arguments == '{"location": "Pa'


@pytest.mark.parametrize("name,error_event,message", [
    ("openai-chat", sse({"error": {"message": "Overloaded", "type": "server_error"}}), "Overloaded"),
    ("anthropic", sse(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
     "overloaded_error: Overloaded"),
    ("openai-responses", sse(("error", {"type": "error", "code": "server_error", "message": "Overloaded"})), "Overloaded"),
    ("ollama", b'{"error": "model runner crashed"}\n', "model runner crashed"),
])
def test_error_event_mid_stream(name, error_event, message):
    stream = STREAMS[name][0]
    head = stream[: len(stream) // 3]
    head = head[: head.rindex(b"\n\n" if name != "ollama" else b"\n") + (2 if name != "ollama" else 1)]
    assembler = PROTOCOLS[name].Assembler()
    assembler.feed_bytes(head + error_event)
    result = assembler.result()
    assert result.status == "error" and message in result.error


def test_sse_decoder_follows_the_standard():
    decoder = SSEDecoder()
    raw = b": comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\nid: 7\rdata: x\r\r" + "data: é\n\n".encode()
    events = []
    for i in range(len(raw)):  # one byte at a time: CR LF split, the UTF-8 character split
        events += decoder.feed(raw[i : i + 1])
    assert [(e.event, e.data, e.id) for e in events] == [("a", "one\ntwo", None), (None, "x", "7"), (None, "é", "7")]


def test_ndjson_decoder_flushes_a_last_line():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == ['{"a": 1}']
    assert decoder.feed(b": 2}") == []
    assert decoder.flush() == ['{"b": 2}']


# -- requests ---------------------------------------------------------------------------------


def test_openai_chat_request():
    body = {
        "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.3,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{not json"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    request = openai_chat.parse_request(json.dumps(body).encode())
    assert request.model == "gpt-4o-mini" and request.stream is True
    assert request.params == {"temperature": 0.3}
    assert request.messages[0] == {"role": "system", "content": "Be brief."}
    assert request.messages[1]["content"] == "Hi there"
    calls = request.messages[2]["tool_calls"]
    assert calls[0]["function"]["arguments"] == {"a": 1}
    assert calls[1]["function"]["arguments"] == {} and calls[1]["function"]["raw_arguments"] == "{not json"
    assert request.tools == tuple(body["tools"])


def test_responses_request_items():
    request = openai_responses.parse_request({
        "model": "gpt-4.1", "instructions": "You are Wilson.", "previous_response_id": None,
        "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
                  {"type": "web_search"}],
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Balance?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"x\":1}"},
            {"type": "function_call", "call_id": "call_2", "name": "f", "arguments": "{\"x\":2}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "one"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "two"}]},
        ],
    })
    assert list(request.messages) == [
        {"role": "system", "content": "You are Wilson."},
        {"role": "user", "content": "Balance?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}},
            {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": {"x": 2}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "one", "name": "f"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two", "name": "f"},
    ]
    assert request.tools[0] == {"type": "function", "function": {"name": "f", "description": "d",
                                                                 "parameters": {"type": "object"}}}
    assert request.tools[1] == {"type": "web_search"}
    assert request.params == {"previous_response_id": None}


def test_anthropic_request_maps_onto_the_openai_shape():
    request = anthropic.parse_request({
        "model": "claude", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are "}, {"type": "text", "text": "Wilson."}],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}},
                  {"type": "web_search_20250305", "name": "web_search"}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                {"type": "text", "text": "And?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
        ],
    })
    assert list(request.messages) == [
        {"role": "system", "content": "You are Wilson."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "f", "content": "42"},
        {"role": "user", "content": [{"type": "text", "text": "And?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]
    assert request.tools[0] == {"type": "function", "function": {"name": "f", "description": "d",
                                                                 "parameters": {"type": "object"}}}
    assert request.tools[1]["type"] == "web_search_20250305"
    assert request.params == {"max_tokens": 100}


def test_ollama_tool_calls_without_ids_link_to_their_results():
    first = ollama.parse_request({"model": "qwen3", "messages": [{"role": "user", "content": "Weather?"}]})
    assert first.stream is True  # Ollama streams unless told not to
    answer = ollama.parse_response({"model": "qwen3", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "weather", "arguments": {"city": "Toronto"}}},
        {"function": {"name": "time", "arguments": {"city": "Toronto"}}}]}, "done": True}, first)
    streamed = ollama.Assembler(first)
    streamed.feed_bytes(json.dumps({"model": "qwen3", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "weather", "arguments": {"city": "Toronto"}}},
        {"function": {"name": "time", "arguments": {"city": "Toronto"}}}]}, "done": True}).encode())
    assert [c.id for c in streamed.result().tool_calls] == [c.id for c in answer.tool_calls]
    second = ollama.parse_request({"model": "qwen3", "stream": False, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "weather", "arguments": {"city": "Toronto"}}},
            {"function": {"name": "time", "arguments": {"city": "Toronto"}}}]},
        {"role": "tool", "tool_name": "time", "content": "14:00"},
        {"role": "tool", "tool_name": "weather", "content": "-3 C"},
    ]})
    assert second.stream is False
    assistant, time_result, weather_result = second.messages[1:]
    assert [c["id"] for c in assistant["tool_calls"]] == [c.id for c in answer.tool_calls]
    assert (time_result["tool_call_id"], time_result["name"]) == (answer.tool_calls[1].id, "time")
    assert (weather_result["tool_call_id"], weather_result["name"]) == (answer.tool_calls[0].id, "weather")


@pytest.mark.parametrize("body,message", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"model": "m"}', "messages"),
])
def test_bad_requests_raise_a_clear_protocol_error(body, message):
    for name in ("openai-chat", "anthropic", "ollama"):
        with pytest.raises(ProtocolError, match=message):
            PROTOCOLS[name].parse_request(body)


def test_responses_and_errors():
    assert openai_chat.parse_response({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}).content == "hi"
    failed = openai_responses.parse_response({"status": "failed", "error": {"code": "server_error", "message": "boom"}})
    assert failed.status == "error" and "boom" in failed.error
    assert anthropic.error_text(429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}') == (
        "HTTP 429: rate_limit_error: slow")
    assert ollama.error_text(500, b'{"error":"no model"}') == "HTTP 500: no model"
    assert openai_chat.error_text(502, b"<html>Bad gateway</html>") == "HTTP 502: <html>Bad gateway</html>"


def test_paths():
    assert for_path("/v1/chat/completions") is openai_chat
    assert for_path("/openai/deployments/x/chat/completions?api-version=1") is openai_chat
    assert for_path("/v1/responses") is openai_responses
    assert for_path("/v1/messages") is anthropic
    assert for_path("/api/chat") is ollama
    assert for_path("/v1/models") is None and for_path("/v1/embeddings") is None


def test_responses_stream_that_fails_or_stops_short():
    head = RESPONSES_STREAM[: RESPONSES_STREAM.index(b"event: response.completed")]
    failed = openai_responses.Assembler()
    failed.feed_bytes(head + sse(("response.failed", {"type": "response.failed", "response": {
        "status": "failed", "error": {"code": "server_error", "message": "model crashed"}, "output": []}})))
    result = failed.result()
    assert result.status == "error" and "model crashed" in result.error
    cut = openai_responses.Assembler()
    cut.feed_bytes(head)
    partial = cut.result("connection dropped")
    assert partial.status == "incomplete" and partial.content == "Let me look."
    assert [(c.id, c.arguments) for c in partial.tool_calls] == [("call_X", {"location": "Paris"})]
    limited = openai_responses.Assembler()
    limited.feed_bytes(head + sse(("response.incomplete", {"type": "response.incomplete", "response": {
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "Let me"}]}]}})))
    result = limited.result()
    assert (result.status, result.content, result.finish_reason) == ("ok", "Let me", "max_output_tokens")


# -- request parameters checked at the boundary (wilson_core.protocols.params) ----------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def near_requests(draw):
    """A protocol and a body with some of that protocol's known keys set to arbitrary JSON."""
    from wilson_core.protocols import params

    protocol = draw(st.sampled_from(sorted(params.RULES)))
    keys = sorted(set(params.RULES[protocol]) | {"tools", "tool_choice", "options"})
    body = draw(st.dictionaries(st.sampled_from(keys), JSON, max_size=5))
    return protocol, body


@settings(max_examples=300, deadline=None)
@given(near_requests(), st.none() | st.integers(1, 100))
def test_params_check_refuses_with_a_parameter_error_or_returns_the_converted_body(request, limit):
    """Whatever JSON comes, check() answers with a ParameterError naming a field, or a body whose
    numbers are in range: never another exception (which a server would answer with a 500)."""
    from wilson_core.errors import ParameterError
    from wilson_core.protocols import params

    protocol, body = request
    try:
        out = params.check(protocol, body, max_tokens_limit=limit)
    except ParameterError as exc:
        assert exc.param and str(exc).startswith(exc.param.split(".")[0].split("[")[0])
        return
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if key in out:
            assert type(out[key]) is int and 1 <= out[key] <= (limit or params.MAX_TOKENS)
    if "seed" in out:
        assert type(out["seed"]) is int and 0 <= out["seed"] < 2**64
    assert all(value is not None for value in out.values())
    if limit is not None:
        assert any(key in out for key in ("max_tokens", "max_completion_tokens", "max_output_tokens")) or (
            "num_predict" in out.get("options", {}))


def test_params_check_names_the_field_in_each_protocol():
    from wilson_core.errors import ParameterError
    from wilson_core.protocols import params

    cases = [
        ("openai-chat", {"messages": [{"role": "user", "content": "x"}], "top_p": 2}, "top_p"),
        ("openai-responses", {"input": "x", "text": {"format": {"type": "json_schema", "schema": {"type": 3}}}},
         "text.format.schema"),
        ("anthropic", {"messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ("anthropic", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
                       "tools": [{"name": "a", "input_schema": {}}, {"name": "a", "input_schema": {}}]}, "tools"),
        ("ollama", {"messages": [{"role": "user", "content": "x"}], "options": {"top_k": -1}}, "options.top_k"),
        ("ollama", {"messages": [{"role": "user", "content": "x"}], "format": "yaml"}, "format"),
    ]
    for protocol, body, param in cases:
        with pytest.raises(ParameterError) as refused:
            params.check(protocol, body)
        assert refused.value.param == param, (protocol, str(refused.value))
