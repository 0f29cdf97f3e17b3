"""Ollama TEMPLATEs (Go templates) for the chat templates Wilson trains with, and the check
that one renders exactly what the Hugging Face (Jinja) template renders.

Ollama fills a TEMPLATE with ``.Messages`` (``api.Message``: ``.Role``, ``.Content``,
``.ToolCalls`` of ``.Function.Name`` / ``.Function.Arguments``), ``.Tools``
(``api.Tool``: ``.Type``, ``.Function.Name``, ``.Description``, ``.Parameters`` with
``.Type``, ``.Properties``, ``.Required``) and ``.System``.  :func:`ollama_values`
builds those values from a chat-template conversation; :func:`choose_template` tries
each known translation on probe conversations and keeps the first whose output is
identical to the HF template's; none matching is an error (pass your own with
``-o template_file=FILE``; it is checked the same way).

Limits that come from Go and Ollama, not from the translation: Go ranges over maps in
sorted key order, so tool-call arguments and tool parameter properties render in sorted
key order (HF keeps insertion order); strings are quoted with Go's ``%q`` (the same as
JSON except for rare control characters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from wilson_core.interfaces import DeployError

from .gotemplate import GoNamed, GoStruct, Template

# A JSON encoder, written in Go's template language, that formats like Python's
# json.dumps / Jinja's tojson (", " and ": " separators) for Ollama's decoded JSON values.
HF_JSON_DEFINE = (
    '{{- define "hfjson" }}{{ $t := printf "%T" . }}'
    '{{- if eq $t "string" }}{{ printf "%q" . }}'
    '{{- else if or (eq $t "map[string]interface {}") (eq $t "api.ToolCallFunctionArguments") }}'
    '{{ "{" }}{{ $first := true }}{{ range $k, $v := . }}{{ if not $first }}, {{ end }}'
    '{{ $first = false }}{{ printf "%q" $k }}: {{ template "hfjson" $v }}{{ end }}{{ "}" }}'
    '{{- else if eq $t "[]interface {}" }}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}'
    '{{ template "hfjson" $v }}{{ end }}]'
    '{{- else }}{{ json . }}{{ end }}{{ end }}'
)

# One tool as tojson writes the OpenAI function-tool shape.
TOOL_JSON = (
    '{"type": {{ printf "%q" .Type }}, "function": {"name": {{ printf "%q" .Function.Name }}'
    '{{ if .Function.Description }}, "description": {{ printf "%q" .Function.Description }}{{ end }}'
    ', "parameters": {"type": {{ printf "%q" .Function.Parameters.Type }}, "properties": {{ "{" }}'
    '{{ $first := true }}{{ range $k, $v := .Function.Parameters.Properties }}'
    '{{ if not $first }}, {{ end }}{{ $first = false }}{{ printf "%q" $k }}: {"type": {{ json $v.Type }}'
    '{{ if $v.Description }}, "description": {{ printf "%q" $v.Description }}{{ end }}'
    '{{ if $v.Enum }}, "enum": {{ template "hfjson" $v.Enum }}{{ end }}}{{ end }}{{ "}" }}'
    '{{ if .Function.Parameters.Required }}, "required": [{{ range $i, $r := .Function.Parameters.Required }}'
    '{{ if $i }}, {{ end }}{{ printf "%q" $r }}{{ end }}]{{ end }}}}}'
)


def wilson_chatml_tools() -> str:
    """ChatML with Wilson's tool block and ``<tool_call>`` calls (wilson_train.tiny's template)."""
    return (
        HF_JSON_DEFINE
        + '{{- $system := "" }}{{ $lastRole := "" }}'
        '{{- if .Messages }}{{ if eq (index .Messages 0).Role "system" }}{{ $system = (index .Messages 0).Content }}{{ end }}{{ end }}'
        "{{- if .Tools }}<|im_start|>system\n{{ if $system }}{{ $system }}\n\n{{ end }}"
        'You can call tools. Write each call as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.\n<tools>'
        "{{ range .Tools }}\n" + TOOL_JSON + "{{ end }}\n</tools><|im_end|>\n"
        "{{ else if $system }}<|im_start|>system\n{{ $system }}<|im_end|>\n{{ end }}"
        "{{- range $i, $m := .Messages }}{{ $lastRole = .Role }}"
        '{{- if eq .Role "system" }}{{ if $i }}<|im_start|>system\n{{ .Content }}<|im_end|>\n{{ end }}'
        '{{- else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}'
        '{{ range .ToolCalls }}<tool_call>{"name": {{ printf "%q" .Function.Name }}, "arguments": '
        '{{ template "hfjson" .Function.Arguments }}}</tool_call>{{ end }}<|im_end|>\n'
        "{{ else }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "{{- end }}"
        '{{- if ne $lastRole "assistant" }}<|im_start|>assistant\n{{ end }}'
    )


def chatml(default_system: str | None = None) -> str:
    """Plain ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), optionally with the default
    system prompt some models (SmolLM2) insert when the conversation has none."""
    first = ""
    if default_system is not None:
        first = ('{{ if and (eq $i 0) (ne .Role "system") }}<|im_start|>system\n'
                 + default_system.replace("{{", '{{ "{{" }}') + "<|im_end|>\n{{ end }}")
    return (
        '{{- $lastRole := "" }}{{ range $i, $m := .Messages }}{{ $lastRole = .Role }}' + first
        + "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        '{{- if ne $lastRole "assistant" }}<|im_start|>assistant\n{{ end }}'
    )


def candidates(hf_template: str) -> list[tuple[str, str]]:
    """Known translations worth trying for ``hf_template`` (name, Go template)."""
    found = [("wilson-chatml-tools", wilson_chatml_tools()), ("chatml", chatml())]
    match = re.search(r"<\|im_start\|>system\n(.+?)<\|im_end\|>", hf_template)
    if match and "{" not in match.group(1):
        found.append(("chatml-default-system", chatml(match.group(1))))
    return found


# -- Ollama's values ------------------------------------------------------------------------


def _json_numbers(value: Any) -> Any:
    """Values as Go's encoding/json decodes them into interface{}: every number is float64."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(v) for v in value]
    return value


def _property_type(value: Any) -> GoNamed:
    types = value if isinstance(value, list) else ([value] if value is not None else [])
    return GoNamed("api.PropertyType", list(types), marshal=lambda v: v[0] if len(v) == 1 else v)


def _tool(tool: dict[str, Any]) -> GoStruct:
    function = tool.get("function") or {}
    params = function.get("parameters") or {}
    properties = {
        name: GoStruct("api.ToolProperty", Type=_property_type(spec.get("type")),
                       Description=spec.get("description") or "",
                       Enum=_json_numbers(spec.get("enum")) if spec.get("enum") else None)
        for name, spec in (params.get("properties") or {}).items()
    }
    return GoStruct(
        "api.Tool", Type=tool.get("type") or "function",
        Function=GoStruct("api.ToolFunction", Name=function.get("name") or "",
                          Description=function.get("description") or "",
                          Parameters=GoStruct("api.ToolFunctionParameters", Type=params.get("type") or "",
                                              Required=list(params.get("required") or []),
                                              Properties=properties)))


def _arguments(raw: Any) -> GoNamed:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = {}
    return GoNamed("api.ToolCallFunctionArguments", _json_numbers(raw or {}))


def _message(message: dict[str, Any]) -> GoStruct:
    calls = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function", call)
        calls.append(GoStruct("api.ToolCall", Function=GoStruct(
            "api.ToolCallFunction", Index=index, Name=function.get("name") or "",
            Arguments=_arguments(function.get("arguments")))))
    return GoStruct("api.Message", Role=message.get("role") or "", Content=message.get("content") or "",
                    Thinking="", Images=None, ToolCalls=calls,
                    ToolName=message.get("tool_name") or message.get("name") or "")


def ollama_values(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                  system: str | None = None) -> GoStruct:
    """What Ollama passes to a TEMPLATE for a chat request (its SYSTEM prepended when the
    conversation has no system message, as Ollama does)."""
    messages = list(messages)
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    first_system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    return GoStruct("template.Values", Messages=[_message(m) for m in messages],
                    Tools=[_tool(t) for t in tools or []], System=first_system, Prompt="",
                    Response="", Think=False, IsThinkSet=False)


# -- probes --------------------------------------------------------------------------------

PROBE_TOOLS = [
    {"type": "function", "function": {
        "name": "categorize", "description": "Set the category of a transaction",
        "parameters": {"type": "object", "properties": {
            "category": {"type": "string", "description": "one of the known categories",
                         "enum": ["food", "housing", "transport"]},
            "id": {"type": "string"}}, "required": ["id", "category"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search past transactions",
        "parameters": {"type": "object", "properties": {
            "limit": {"type": "integer"}, "query": {"type": "string"}}, "required": ["query"]}}},
]


def probe_conversations() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None, bool]]:
    """(messages, tools, add_generation_prompt) cases the translation must render identically."""
    system = {"role": "system", "content": "You sort bank transactions.\nAnswer briefly."}
    user = {"role": "user", "content": 'Rent "November" 900.00 EUR — café & <b>bar</b>'}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "categorize",
                                          "arguments": {"category": "housing", "id": "t1"}}},
        {"type": "function", "function": {"name": "search",
                                          "arguments": {"limit": 5, "query": "rent"}}}]}
    result = {"role": "tool", "name": "categorize", "content": '{"ok": true}'}
    answer = {"role": "assistant", "content": "Done: housing."}
    return [
        ([user], None, True),
        ([system, user], None, True),
        ([system, user, answer], None, False),
        ([system, user, answer, {"role": "user", "content": "And 4.50 at Starbucks?"}], None, True),
        ([user], PROBE_TOOLS, True),
        ([system, user, call, result, answer], PROBE_TOOLS, False),
        ([system, user, call, result], PROBE_TOOLS, True),
    ]


def check_translation(go_template: str, hf_render: Callable[..., str]) -> list[str]:
    """Differences between the Go TEMPLATE and the HF template on the probes (empty: identical).

    ``hf_render(messages, tools, add_generation_prompt)`` renders with the HF template; a
    probe the HF template cannot render (it raises) is skipped.
    """
    template = Template(go_template)
    problems = []
    for messages, tools, add_generation_prompt in probe_conversations():
        try:
            expected = hf_render(messages, tools, add_generation_prompt)
        except Exception:
            continue
        ours = template.render(ollama_values(messages, tools))
        if ours != expected:
            problems.append(f"probe with {len(messages)} messages{' and tools' if tools else ''}: "
                            f"HF {expected!r} != TEMPLATE {ours!r}")
    return problems


def choose_template(hf_template: str, hf_render: Callable[..., str],
                    custom: str | None = None) -> tuple[str, str]:
    """(name, Go template) rendering exactly what ``hf_template`` renders on every probe."""
    options = [("custom", custom)] if custom is not None else candidates(hf_template)
    report = []
    for name, go_template in options:
        problems = check_translation(go_template, hf_render)
        if not problems:
            return name, go_template
        report.append(f"{name}: {problems[0][:400]}")
    raise DeployError(
        "no Ollama TEMPLATE renders this model's chat template exactly; write one (Go template) "
        "and pass -o template_file=FILE. Tried: " + " | ".join(report)
    )
