"""Bad requests get a 400 in the client's protocol, never a 500, from `wilson serve` and local routes.

Two layers are tested:

- the boundary (wilson_core.protocols.params): parameters of the wrong type or out of range,
  through the official openai and anthropic SDKs (which show the error JSON they read) and
  raw HTTP (Ollama);
- a provider refusing what is asked (a ParameterError raised while the model works) is a 400
  too, streamed or not, and recorded as an error.

Then a property test throws arbitrary JSON at every endpoint of a real `wilson serve` on a
tiny transformers model (wilson_train.tiny): no answer is a 5xx, every 4xx is the protocol's
error JSON, and the server still answers a good request afterwards.
"""

from __future__ import annotations

import json
import os

import anthropic
import httpx
import openai
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from wilson_proxy.app import ProxySettings, RunningProxy
from wilson_proxy.routes import Route

from wilson_core.errors import ParameterError
from wilson_core.protocols import params
from wilson_core.store import open_store

MESSAGES = [{"role": "user", "content": "Categorise: coffee, 3.20 EUR"}]


def script(messages, tools):
    """Refuses (like a model that cannot honour a schema) when the user asks it to; else echoes."""
    text = messages[-1].get("content") if isinstance(messages[-1].get("content"), str) else "?"
    if text.startswith("refuse"):
        raise ParameterError("response_format: this model cannot enforce the schema's 'not'",
                             "response_format")
    return f"local:{text}"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    db = tmp_path_factory.mktemp("bad") / "serve.db"
    settings = ProxySettings(upstreams={}, port=0, db=str(db), served_model="tiny",
                             route_flags=("local scripted:tiny",), max_tokens_limit=64)
    with RunningProxy(settings) as proxy:
        proxy.server.set_routes([Route(name="serve", mode="local", provider="scripted:tiny",
                                       options={"script": script, "chunk_chars": 3})])
        yield proxy, db


def openai_client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def anthropic_client(proxy: RunningProxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize(("kwargs", "param", "says"), [
    ({"temperature": "hot"}, "temperature", "expected a number, got a string"),
    ({"temperature": 2.5}, "temperature", "between 0 and 2"),
    ({"top_p": -0.1}, "top_p", "between 0 and 1"),
    ({"max_tokens": 0}, "max_tokens", "between 1 and"),
    ({"max_tokens": 65}, "max_tokens", "at most 64 tokens"),
    ({"max_completion_tokens": 2.5}, "max_completion_tokens", "expected an integer"),
    ({"stop": [3]}, "stop[0]", "expected a string"),
    ({"seed": "7"}, "seed", "expected an integer"),
    ({"n": 2}, "n", "one choice"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": 5}}}]},
     "tools[0].function.parameters", "not a valid JSON schema"),
    ({"tools": [{"type": "function", "function": {"name": "x"}}],
      "tool_choice": {"type": "function", "function": {"name": "y"}}}, "tool_choice.function.name", "names no tool"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}},
     "response_format.json_schema.schema", "expected an object"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "'xml' is not one of"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "expected a boolean"),
    ({"extra_body": {"guided_choice": []}}, "guided_choice", "at least one choice"),
])
def test_openai_sdk_shows_a_400_naming_the_parameter(scripted, kwargs, param, says):
    proxy, _ = scripted
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(proxy).chat.completions.create(model="tiny", messages=MESSAGES, **kwargs)
    assert refused.value.status_code == 400
    assert refused.value.body["type"] == "invalid_request_error" and refused.value.body["param"] == param
    assert says in refused.value.body["message"]


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"extra_body": {"temperature": 1.5}}, "temperature: 1.5 is out of range"),  # (SDK 2.x has no kwarg)
    ({"max_tokens": -1}, "max_tokens: -1 is out of range"),
    ({"extra_body": {"top_k": "ten"}}, "top_k: expected an integer"),
    ({"stop_sequences": "END"}, "stop_sequences: expected an array"),
    ({"tool_choice": {"type": "any"}}, "'any' needs tools"),
    ({"tools": [{"name": "lookup"}]}, "tools[0].input_schema: expected an object"),
    ({"system": [{"type": "image"}]}, "system[0].type"),
])
def test_anthropic_sdk_shows_a_400(scripted, kwargs, says):
    proxy, _ = scripted
    arguments = {"model": "tiny", "max_tokens": 8, "messages": MESSAGES, **kwargs}
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(proxy).messages.create(**arguments)
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "invalid_request_error"
    assert says in refused.value.body["error"]["message"]


def test_raw_http_bodies_that_are_not_requests_are_400(scripted):
    proxy, _ = scripted
    cases = [("/v1/chat/completions", b"{not json"), ("/v1/chat/completions", b"[1]"),
             ("/v1/chat/completions", b'{"messages": []}'), ("/v1/messages", b'{"messages": "hi"}'),
             ("/v1/responses", b'{"input": 5}'), ("/api/chat", b'{"messages": [{"role": "user", "content": "x"}], '
                                                    b'"options": {"temperature": -1}}'),
             ("/api/chat", b'{"messages": [1]}')]
    for path, body in cases:
        answer = httpx.post(proxy.url + path, content=body, timeout=30)
        assert answer.status_code == 400, (path, body, answer.text)
        error = answer.json()
        if path == "/api/chat":
            assert isinstance(error["error"], str)
        elif path == "/v1/messages":
            assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        else:
            assert error["error"]["type"] == "invalid_request_error"


def test_a_provider_refusing_a_parameter_is_a_400_streamed_or_not_and_recorded(scripted):
    proxy, db = scripted
    before = proxy.wait_recorded()["recorded"]
    app = openai_client(proxy)
    refuse = [{"role": "user", "content": "refuse please"}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            reply = app.chat.completions.create(model="tiny", messages=refuse, stream=stream)
            list(reply) if stream else None
        assert refused.value.body["param"] == "response_format" and "'not'" in refused.value.body["message"]
    with pytest.raises(anthropic.BadRequestError, match="cannot enforce"):
        with anthropic_client(proxy).messages.stream(model="tiny", max_tokens=8, messages=refuse) as events:
            list(events)
    with pytest.raises(openai.BadRequestError, match="cannot enforce"):
        list(app.responses.create(model="tiny", input="refuse this", stream=True))
    ollama = httpx.post(proxy.url + "/api/chat", json={"model": "tiny", "messages": refuse}, timeout=30)
    assert ollama.status_code == 400 and "cannot enforce" in ollama.json()["error"]
    # the server still answers, and the next good call is served as usual
    assert app.chat.completions.create(model="tiny", messages=MESSAGES).choices[0].message.content.startswith("local:")
    stats = proxy.wait_recorded()
    assert stats["recorded"] - before == 6 and stats["capture_errors"] == 0
    store = open_store(db)
    try:
        rows = sorted(store.iter_interactions(), key=lambda r: r.created_at)[before:]
    finally:
        store.close()
    assert [r.status for r in rows] == ["error"] * 5 + ["ok"]
    assert all("cannot enforce" in r.error for r in rows[:5])


def test_check_converts_once():
    out = params.check("openai-chat", {"messages": MESSAGES, "max_tokens": 8.0, "seed": -1, "user": None})
    assert out["max_tokens"] == 8 and isinstance(out["max_tokens"], int) and out["seed"] == 2**64 - 1
    assert "user" not in out
    ollama = params.check("ollama", {"messages": MESSAGES, "options": {"num_predict": -1}}, max_tokens_limit=16)
    assert "num_predict" not in ollama["options"] and ollama["max_tokens"] == 16
    assert params.check("openai-chat", {"messages": MESSAGES, "max_completion_tokens": 4},
                        max_tokens_limit=16).get("max_tokens") is None


# -- arbitrary JSON at a real `wilson serve` on a tiny model -----------------------------------

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENDPOINTS = {
    "/v1/chat/completions": ("openai-chat", {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}),
    "/v1/responses": ("openai-responses", {"model": "tiny", "input": "Categorise: tea", "max_output_tokens": 2}),
    "/v1/messages": ("anthropic", {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}),
    "/api/chat": ("ollama", {"model": "tiny", "messages": MESSAGES, "stream": False,
                             "options": {"num_predict": 2}}),
}
LIMIT = 3  # the server's ceiling: a valid request costs the tiny model at most 3 tokens

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
# values that are nearly right, so that the checks past the first type test are reached too
near_values = st.one_of(
    st.sampled_from(["auto", "none", "required", "json", "text", "function", "tool", "any", "user", "lookup"]),
    st.integers(-3, 70), st.floats(-3, 3), st.booleans(),
    st.fixed_dictionaries({"type": st.sampled_from(["function", "json_schema", "json_object", "tool", "text"])},
                          optional={"name": st.sampled_from(["lookup", "x"]), "function": json_values,
                                    "json_schema": json_values, "schema": json_values, "parameters": json_values}),
    st.lists(st.fixed_dictionaries({"type": st.just("function")}, optional={
        "name": st.sampled_from(["lookup", "bad name"]), "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["lookup", ""])}, optional={"parameters": json_values}),
        "parameters": json_values, "input_schema": json_values}), max_size=2),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "x"])},
                                   optional={"content": json_values, "tool_calls": json_values}), max_size=3),
)


schemas = st.one_of(
    st.just({"type": "object"}),
    st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
        st.text(min_size=1, max_size=6), st.fixed_dictionaries({"type": st.sampled_from(
            ["string", "integer", "number", "boolean", "array", "null"])}), max_size=3)}),
    st.fixed_dictionaries({"enum": st.lists(st.text(max_size=6), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "boolean"])}),
)
chat_tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.sampled_from(["lookup", "add"])}, optional={"description": st.text(max_size=20),
                                                             "parameters": schemas})})
texts = st.text(max_size=40)
# values a client may well send, so that requests reach the model with every kind of ask
VALID = {
    "temperature": st.floats(0, 1), "top_p": st.floats(0, 1), "top_k": st.integers(0, 50),
    "seed": st.integers(-(2**63), 2**64 - 1), "max_tokens": st.integers(1, LIMIT),
    "max_completion_tokens": st.integers(1, LIMIT), "max_output_tokens": st.integers(1, LIMIT),
    "stop": st.one_of(texts, st.lists(texts, max_size=3)), "stop_sequences": st.lists(texts, max_size=3),
    "n": st.just(1), "presence_penalty": st.floats(-2, 2), "logprobs": st.booleans(), "user": texts,
    "guided_choice": st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3),
    "response_format": st.one_of(st.just({"type": "text"}), st.just({"type": "json_object"}),
                                 st.builds(lambda schema: {"type": "json_schema", "json_schema": {
                                     "name": "a", "schema": schema}}, schemas)),
    "text": st.builds(lambda schema: {"format": {"type": "json_schema", "name": "a", "schema": schema}}, schemas),
    "format": st.one_of(st.just("json"), schemas),
    "system": texts, "instructions": texts, "input": st.one_of(texts, st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "developer"]), "content": texts}),
        min_size=1, max_size=3)),
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                "content": texts}), min_size=1, max_size=3),
    "options": st.fixed_dictionaries({}, optional={"temperature": st.floats(0, 1), "num_predict": st.integers(
        -2, LIMIT), "seed": st.integers(0, 100), "stop": st.lists(texts, max_size=2), "top_k": st.integers(0, 9)}),
}
TOOL_SETS = {  # tools and a tool_choice that fits them, per protocol
    "openai-chat": st.tuples(st.lists(chat_tool, min_size=1, max_size=2, unique_by=lambda t: t["function"]["name"]),
                             st.sampled_from(["auto", "none", "required", {"type": "function",
                                                                           "function": {"name": "lookup"}}])),
    "ollama": st.tuples(st.lists(chat_tool, min_size=1, max_size=2, unique_by=lambda t: t["function"]["name"]),
                        st.just(None)),
    "openai-responses": st.tuples(st.lists(chat_tool.map(lambda t: {"type": "function", **t["function"]}),
                                           min_size=1, max_size=2, unique_by=lambda t: t["name"]),
                                  st.sampled_from(["auto", "required", {"type": "function", "name": "lookup"}])),
    "anthropic": st.tuples(st.lists(chat_tool.map(lambda t: {"name": t["function"]["name"], "input_schema": t[
        "function"].get("parameters", {"type": "object"})}), min_size=1, max_size=2, unique_by=lambda t: t["name"]),
        st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "lookup"}])),
}


def keys_for(protocol: str) -> list[str]:
    return sorted(set(params.RULES[protocol]) | {"tools", "tool_choice", "messages", "options"})


@st.composite
def requests(draw):
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    protocol, base = ENDPOINTS[path]
    shape = draw(st.sampled_from(["valid", "valid", "mutated", "mutated", "arbitrary", "bytes"]))
    if shape == "bytes":
        return path, draw(st.binary(max_size=64))
    if shape == "arbitrary":
        return path, json.dumps(draw(json_values)).encode()
    body = dict(base)
    if draw(st.booleans()):
        tools, choice = draw(TOOL_SETS[protocol])
        body["tools"] = tools
        if choice is not None and ("lookup" in json.dumps(tools) or "name" not in json.dumps(choice)):
            body["tool_choice"] = choice
    valid = [key for key in keys_for(protocol) if key in VALID]
    for key in draw(st.lists(st.sampled_from(valid), max_size=3, unique=True)):
        body[key] = draw(VALID[key])
    for key in draw(st.lists(st.sampled_from(keys_for(protocol)), max_size=2 if shape == "mutated" else 0,
                             unique=True)):
        body[key] = draw(st.one_of(json_values, near_values))
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=1)):
        del body[key]
    if draw(st.booleans()) and protocol != "ollama":
        body["stream"] = True
    return path, json.dumps(body, allow_nan=True).encode()


def check_answer(path: str, status: int, text: str) -> None:
    assert status < 500, (path, status, text[:500])
    if status >= 400:
        error = json.loads(text)
        if path == "/api/chat":
            assert isinstance(error["error"], str)
        elif path == "/v1/messages":
            assert error["type"] == "error" and error["error"]["message"]
        else:
            assert error["error"]["message"] and error["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("wilson_train", reason="needs wilson-train (tiny models)")
    from wilson_train.tiny import build_tiny_model

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama")


@pytest.fixture(scope="module", params=["transformers", "onnx"])
def tiny_serve(request, tiny_folder, tmp_path_factory):
    """`wilson serve` on the tiny model through transformers, and through onnxruntime (its
    Transformers.js deployment, made by the real deployer)."""
    folder = tiny_folder
    if request.param == "onnx":
        pytest.importorskip("wilson_onnx", reason="needs wilson-onnx")
        pytest.importorskip("onnxruntime")
        from wilson_onnx.deployer import TransformersJsDeployer

        from wilson_core.interfaces import DeployConfig

        out = tmp_path_factory.mktemp("deploy") / "web"
        folder = TransformersJsDeployer().deploy(DeployConfig(model=str(tiny_folder), out=str(out), quant="fp32")).out
    db = tmp_path_factory.mktemp("fuzz") / "serve.db"
    settings = ProxySettings(upstreams={}, port=0, db=str(db), served_model="tiny",
                             route_flags=(f"local '{request.param}:{folder}'",), max_tokens_limit=LIMIT)
    with RunningProxy(settings) as proxy, httpx.Client(base_url=proxy.url, timeout=120) as http:
        yield proxy, http, db


@settings(max_examples=int(os.environ.get("WILSON_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_arbitrary_json_never_gets_a_5xx(tiny_serve, request):
    _, http, _ = tiny_serve
    path, body = request
    with http.stream("POST", path, content=body, headers={"content-type": "application/json"}) as answer:
        text = answer.read().decode("utf-8", "replace")
    event(f"{path} -> {answer.status_code}")
    check_answer(path, answer.status_code, text)
    if answer.status_code == 200:  # a stream that failed after its head would carry the failure in it
        assert not any(marker in text for marker in ('"server_error"', '"api_error"', '{"error":')), text[:500]


def test_the_server_still_answers_after_the_fuzz(tiny_serve):
    proxy, http, db = tiny_serve
    assert http.get("/wilson/health").json()["ok"] is True
    reply = openai_client(proxy).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens <= 2
    stats = proxy.wait_recorded(60)
    assert stats["capture_errors"] == 0 and stats["lost"] == 0, stats
    store = open_store(db)
    try:
        assert all(row.status == "ok" for row in store.iter_interactions())  # what was answered, was answered
    finally:
        store.close()
