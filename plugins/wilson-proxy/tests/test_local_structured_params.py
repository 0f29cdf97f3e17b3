"""A local route hands the request's structured-output ask to the local provider, whatever
protocol the client speaks, in the one shape the providers enforce (wilson_core.constraints)."""

from __future__ import annotations

import pytest
from wilson_proxy.local import provider_params

from wilson_core import constraints
from wilson_core.protocols import anthropic, ollama, openai_chat, openai_responses

SCHEMA = {"type": "object", "properties": {"category": {"enum": ["Groceries", "Dining"]}},
          "required": ["category"]}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]


def local_params(module, body):
    parsed = module.parse_request(body)
    return provider_params({**body, **parsed.params}), list(parsed.tools) or None


@pytest.mark.parametrize("module, body", [
    (openai_chat, {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}}),
    (openai_responses, {"model": "m", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "c", "schema": SCHEMA}}}),
    (ollama, {"model": "m", "messages": [{"role": "user", "content": "x"}], "format": SCHEMA}),
])
def test_a_json_schema_reaches_the_local_provider_from_every_protocol(module, body):
    params, tools = local_params(module, body)
    constraint = constraints.from_params(params, tools)
    assert constraint is not None and constraint.schema == SCHEMA
    assert constraints.check(constraint, '{"category": "Dining"}') is None
    assert constraints.check(constraint, '{"category": "Rent"}') is not None


def test_a_choice_list_and_json_mode_pass_through():
    params, _ = local_params(openai_chat, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                           "guided_choice": ["Groceries", "Dining"]})
    assert constraints.from_params(params).choices == ("Groceries", "Dining")
    params, _ = local_params(ollama, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                      "format": "json"})
    assert params["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("module, body", [
    (openai_chat, {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": TOOLS,
                   "tool_choice": {"type": "function", "function": {"name": "lookup"}}}),
    (anthropic, {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}],
                 "tools": [{"name": "lookup", "input_schema": TOOLS[0]["function"]["parameters"]}],
                 "tool_choice": {"type": "tool", "name": "lookup"}}),
])
def test_a_forced_tool_call_reaches_the_local_provider(module, body):
    params, tools = local_params(module, body)
    constraint = constraints.from_params(params, tools)
    assert constraint is not None and constraint.kind == constraints.TOOL


def test_no_ask_means_no_constraint():
    params, tools = local_params(openai_chat, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                               "temperature": 0})
    assert constraints.from_params(params, tools) is None
    assert params == {"temperature": 0}
