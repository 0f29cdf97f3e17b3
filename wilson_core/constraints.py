"""Structured outputs: the constraint an app puts on a reply, read from its request parameters.

An app asks for structure the way it would ask a hosted API; the local providers
(``llamacpp:``, ``transformers:``, ``onnx:``) enforce it while decoding, so every
reply obeys it:

- ``response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``
  (OpenAI): a JSON value valid for the schema;
- ``response_format={"type": "json_object"}``: any JSON object;
- ``guided_choice=["A", "B", ...]`` (vLLM's name for an enum): exactly one of the strings,
  nothing around it;
- ``tool_choice={"type": "function", "function": {"name": NAME}}``, or ``"required"``, with
  ``tools``: a tool call (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``) whose
  arguments are valid for the tool's parameter schema.

The parameters are captured with the call (``params_json``), so training data, ``wilson eval``
and the deployed model see the same constraint.  :func:`check` says whether a reply obeys
one (a small validator for the JSON-schema keywords constraints use); :func:`token_matcher`
(llguidance, imported only then) drives a Hugging Face tokenizer's decoding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

from wilson_core.errors import ParameterError

CHOICE = "choice"
JSON = "json"
TOOL = "tool"

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


class ConstraintError(ParameterError):
    """A constraint that cannot be understood or enforced (bad shape, unknown tool...): the request's fault."""


@frozen
class Constraint:
    """What a reply must be: one of ``choices``, JSON valid for ``schema``, or a tool call."""

    kind: str
    choices: tuple[str, ...] = field(default=(), converter=tuple)
    #: JSON: the reply's schema; TOOL: the schema of ``{"name": ..., "arguments": ...}``.
    schema: Mapping[str, Any] | None = None

    def describe(self) -> str:
        if self.kind == CHOICE:
            return f"one of {len(self.choices)} choices"
        if self.kind == TOOL:
            return "a tool call"
        return "JSON valid for a schema"


def from_params(params: Mapping[str, Any] | None, tools: Sequence[Mapping[str, Any]] | None = None) -> Constraint | None:
    """The constraint a request's parameters ask for, or ``None``.  Raises :class:`ConstraintError`
    for a parameter of the right name but the wrong shape."""
    params = params or {}
    choices = params.get("guided_choice")
    if choices is not None:
        if not isinstance(choices, (list, tuple)) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise ConstraintError("guided_choice must be a non-empty list of non-empty strings")
        return Constraint(CHOICE, choices=tuple(choices))
    response_format = params.get("response_format")
    if response_format is not None:
        return _from_response_format(response_format)
    tool_choice = params.get("tool_choice")
    if tool_choice is not None and tool_choice not in ("auto", "none"):
        return Constraint(TOOL, schema=tool_call_schema(tools or [], _forced_name(tool_choice)))
    return None


def _from_response_format(value: Any) -> Constraint | None:
    if not isinstance(value, Mapping) or "type" not in value:
        raise ConstraintError('response_format must be an object with a "type"')
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint(JSON, schema={"type": "object"})
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise ConstraintError('response_format json_schema needs {"json_schema": {"schema": {...}}}')
        return Constraint(JSON, schema=schema)
    raise ConstraintError(f"response_format type {kind!r} is not supported (json_schema, json_object, text)")


def _forced_name(tool_choice: Any) -> str | None:
    if tool_choice == "required":
        return None
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return function["name"]
    raise ConstraintError('tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}')


def tool_call_schema(tools: Sequence[Mapping[str, Any]], name: str | None = None) -> dict[str, Any]:
    """The schema of a tool call's JSON body for the tool ``name`` (any of ``tools`` when ``None``).

    Arguments not declared in the tool's ``properties`` are ruled out unless its schema sets
    ``additionalProperties`` itself (as OpenAI's strict function calling does).
    """
    options = []
    for tool in tools:
        function = tool.get("function", tool)
        if name is None or function.get("name") == name:
            parameters = dict(function.get("parameters") or {"type": "object"})
            # as OpenAI's strict tool calls: only the declared arguments, unless the schema says otherwise
            parameters.setdefault("additionalProperties", not parameters.get("properties"))
            options.append({"type": "object", "properties": {"name": {"const": function.get("name")},
                                                             "arguments": parameters},
                            "required": ["name", "arguments"], "additionalProperties": False})
    if not options:
        raise ConstraintError(f"tool_choice names {name!r}, which is not among the tools offered"
                              if name else 'tool_choice "required" needs tools')
    return options[0] if len(options) == 1 else {"oneOf": options}


def keywords(schema: Any) -> set[str]:
    """Every JSON-schema keyword ``schema`` uses, nested schemas included (property names are not keywords)."""
    found: set[str] = set()
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            found.add(str(key))
            if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, Mapping):
                for item in value.values():
                    found |= keywords(item)
            elif isinstance(value, (Mapping, list)) and key not in ("enum", "const", "required", "examples", "default"):
                found |= keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= keywords(item)
    return found


# -- checking a reply ------------------------------------------------------------------------


def check(constraint: Constraint, text: str | None, tool_calls: Sequence[Any] = ()) -> str | None:
    """``None`` when a reply obeys ``constraint``, else what is wrong, in words.

    ``tool_calls`` are the parsed calls (objects with ``name`` and ``arguments``) when the
    reply's text has had its ``<tool_call>`` blocks taken out.
    """
    text = text or ""
    if constraint.kind == CHOICE:
        return None if text in constraint.choices else f"{text[:60]!r} is not one of the choices"
    if constraint.kind == TOOL:
        calls = [{"name": c.name, "arguments": c.arguments} for c in tool_calls]
        if not calls:
            return "no tool call"
        for call in calls:
            error = validate(call, constraint.schema or {})
            if error:
                return error
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return f"not JSON: {text[:60]!r}"
    return validate(value, constraint.schema or {})


_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


def validate(value: Any, schema: Mapping[str, Any], where: str = "$") -> str | None:
    """``None`` when ``value`` is valid for ``schema`` (type, enum, const, properties,
    required, additionalProperties, items, anyOf/oneOf, min/max length, items and value), else the
    first problem found."""
    if "const" in schema and value != schema["const"]:
        return f"{where}: {value!r} is not {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {list(schema['enum'])!r}"
    for key in ("anyOf", "oneOf"):
        if key in schema and all(validate(value, option, where) for option in schema[key]):
            return f"{where}: {value!r} matches none of the {key} options"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return f"{where}: {type(value).__name__} where {kind} is expected"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                return f"{where}: {name!r} is required"
        for name, item in value.items():
            if name in properties:
                error = validate(item, properties[name], f"{where}.{name}")
                if error:
                    return error
            elif schema.get("additionalProperties") is False:
                return f"{where}: {name!r} is not allowed"
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                error = validate(item, items, f"{where}[{index}]")
                if error:
                    return error
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{where}: {len(value)} items"
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return f"{where}: length {len(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: {value} is below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: {value} is above {schema['maximum']}"
    return None


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, object))


# -- grammars --------------------------------------------------------------------------------


def lark_grammar(constraint: Constraint, token_ids: Mapping[str, int] | None = None) -> str:
    """The constraint as an llguidance Lark grammar.

    ``token_ids``: tool-call tags that are single added tokens of the vocabulary (llguidance
    matches those by id, ``<[ID]>``, not by their text).
    """
    if constraint.kind == CHOICE:
        return "start: " + " | ".join(json.dumps(c) for c in constraint.choices) + "\n"
    # compact JSON: no free whitespace (a small model would fill max_tokens with it)
    schema = {**(constraint.schema or {}), "x-guidance": {"whitespace_flexible": False}}
    body = f"%json {json.dumps(schema)}"
    if constraint.kind == TOOL:
        ids = token_ids or {}
        tags = [f"<[{ids[t]}]>" if t in ids else json.dumps(t) for t in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE)]
        return f"start: {tags[0]} body {tags[1]}\nbody: {body}\n"
    return f"start: {body}\n"


def gbnf_literal(text: str) -> str:
    """A GBNF string literal (llama.cpp grammars)."""
    escaped = re.sub(r'[\\"]', lambda m: "\\" + m.group(), text)
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def gbnf_choice(choices: Sequence[str]) -> str:
    """A GBNF grammar that accepts exactly one of ``choices``."""
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices) + "\n"


class TokenMatcher:
    """Which next tokens keep a reply within a constraint (llguidance over an HF tokenizer)."""

    def __init__(self, constraint: Constraint, ll_tokenizer: Any, vocab_size: int,
                 token_ids: Mapping[str, int] | None = None) -> None:
        import llguidance

        self.constraint = constraint
        self.vocab_size = vocab_size
        self._matcher = llguidance.LLMatcher(ll_tokenizer, lark_grammar(constraint, token_ids), log_level=0)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot enforce {constraint.describe()}: {self._matcher.get_error()}")

    def allowed(self) -> Any:
        """A boolean numpy array over the vocabulary: the tokens that may come next."""
        import numpy as np
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

        mask = allocate_token_bitmask(1, self.vocab_size)
        fill_next_token_bitmask(self._matcher, mask)
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.vocab_size]
        return bits.astype(bool)

    def consume(self, token: int) -> bool:
        """Advance past ``token``; ``False`` if it was not allowed (the matcher then is in error)."""
        return bool(self._matcher.consume_token(int(token)))

    @property
    def done(self) -> bool:
        return bool(self._matcher.is_stopped() or self._matcher.is_error())


#: llguidance tokenizers, per HF tokenizer object (building one takes about a second).
_LL_TOKENIZERS: dict[int, tuple[Any, Any]] = {}


def token_matcher(constraint: Constraint, hf_tokenizer: Any, vocab_size: int | None = None,
                  eos: Sequence[int] | int | None = None) -> TokenMatcher:
    """A :class:`TokenMatcher` for a Hugging Face (fast) tokenizer; needs ``pip install llguidance``."""
    try:
        import llguidance.hf
    except ImportError:
        raise ConstraintError("structured outputs in local models need llguidance: pip install llguidance") from None
    key = id(hf_tokenizer)
    cached = _LL_TOKENIZERS.get(key)
    if cached is None or cached[0] is not hf_tokenizer:
        eos_ids = list(eos) if isinstance(eos, (list, tuple, set)) else eos
        ll = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos_ids)
        cached = _LL_TOKENIZERS[key] = (hf_tokenizer, ll)
    size = vocab_size or len(hf_tokenizer)
    added = hf_tokenizer.get_added_vocab()
    token_ids = {tag: added[tag] for tag in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE) if tag in added}
    return TokenMatcher(constraint, cached[1], size, token_ids)
