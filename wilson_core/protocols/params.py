"""Request parameters checked once, at the boundary, before a local model sees them.

``wilson serve`` and the proxy's local routes answer requests of four protocols.  A
parameter of the wrong type or out of range (``temperature: "hot"``, ``max_tokens: 0``,
``tool_choice`` naming no tool, a ``response_format`` without a schema...) is the
client's fault: :func:`check` refuses it with a :class:`~wilson_core.errors.ParameterError`
naming the parameter, which the servers answer with HTTP 400 in the client's protocol
(the error JSON the OpenAI and Anthropic SDKs read), never a 500 the SDKs would retry.

What :func:`check` returns is the request with its parameters converted once:
integral numbers sent as ``2.0`` become ints, ``null`` optional parameters are
dropped, a negative ``seed`` is taken modulo 2**64 (local runtimes want an unsigned
seed), Ollama's ``num_predict`` of -1/-2 ("no limit") is dropped, and with a server
ceiling ``max_tokens_limit`` a request without a length gets the ceiling.

Parameters a local model ignores (``presence_penalty``, ``logit_bias``, ``user``...)
are type-checked too, so that a client learns of a typo the same way from any
server; keys this module does not know pass through untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from wilson_core.errors import ParameterError

INT64 = 2**63
#: the longest answer anyone may ask for when the server sets no ceiling
MAX_TOKENS = 2**31 - 1
_OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ANTHROPIC_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_LENGTH_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


def _refuse(param: str, message: str) -> ParameterError:
    return ParameterError(f"{param}: {message}", param)


def number(value: Any, param: str, low: float | None = None, high: float | None = None) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(param, f"expected a number, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(param, "expected a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise _refuse(param, f"{value!r} is out of range: it must be {bounds}")
    return value


def integer(value: Any, param: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(param, f"expected an integer, got {_kind(value)}"
                      + (f" ({value!r})" if isinstance(value, float) else ""))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise _refuse(param, f"{value} is out of range: it must be {bounds}")
    return value


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(param, f"expected a boolean, got {_kind(value)}")
    return value


def string(value: Any, param: str, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str):
        raise _refuse(param, f"expected a string, got {_kind(value)}")
    if choices and value not in choices:
        raise _refuse(param, f"{value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def obj(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _refuse(param, f"expected an object, got {_kind(value)}")
    return value


def array(value: Any, param: str, most: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _refuse(param, f"expected an array, got {_kind(value)}")
    if most is not None and len(value) > most:
        raise _refuse(param, f"at most {most} items, got {len(value)}")
    return value


def strings(value: Any, param: str, most: int = 16, single: bool = True) -> Any:
    """A string or (``single=False``: only) an array of strings, as sent."""
    if single and isinstance(value, str):
        return value
    items = array(value, param, most)
    for index, item in enumerate(items):
        string(item, f"{param}[{index}]")
    return value


def json_schema(value: Any, param: str) -> Mapping[str, Any]:
    """A JSON schema object; checked against its metaschema when ``jsonschema`` is installed."""
    schema = obj(value, param)
    try:
        import jsonschema
    except ImportError:
        return schema
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _refuse(param, f"not a valid JSON schema: {exc.message}") from None
    except Exception as exc:  # a schema the metaschema check itself chokes on ($schema of a wrong type...)
        raise _refuse(param, f"not a valid JSON schema: {exc}") from None
    return schema


def seed(value: Any, param: str) -> int:
    return integer(value, param, -INT64, 2**64 - 1) % 2**64


def _unsupported(what: str) -> Callable[[Any, str], Any]:
    def refuse(value: Any, param: str) -> Any:
        raise _refuse(param, f"{what} is not supported by a local model")

    return refuse


def _one_choice(value: Any, param: str) -> int:
    value = integer(value, param, 1, 128)
    if value != 1:
        raise _refuse(param, f"a local model answers one choice at a time (n=1), not {value}")
    return value


def _stream_options(value: Any, param: str) -> Any:
    for key, item in obj(value, param).items():
        if key == "include_usage" and item is not None:
            boolean(item, f"{param}.include_usage")
    return value


def _logit_bias(value: Any, param: str) -> Any:
    for key, item in obj(value, param).items():
        number(item, f"{param}.{key}", -100, 100)
    return value


def _guided_choice(value: Any, param: str) -> Any:
    items = array(value, param, 1024)
    if not items:
        raise _refuse(param, "expected at least one choice")
    for index, item in enumerate(items):
        if not string(item, f"{param}[{index}]"):
            raise _refuse(f"{param}[{index}]", "a choice cannot be empty")
    return value


def _tool_name(value: Any, param: str, pattern: re.Pattern[str]) -> str:
    name = string(value, param)
    if not pattern.match(name):
        raise _refuse(param, f"{name[:80]!r} must match {pattern.pattern}")
    return name


def chat_tools(value: Any, param: str) -> list[str]:
    """OpenAI chat (and Ollama) function tools; their names."""
    names = []
    for index, tool in enumerate(array(value, param, 512)):
        where = f"{param}[{index}]"
        tool = obj(tool, where)
        if tool.get("type", "function") != "function":
            raise _refuse(f"{where}.type", f"{tool.get('type')!r} tools are not supported by a local model "
                          "(only 'function')")
        function = obj(tool.get("function"), f"{where}.function")
        names.append(_function(function, f"{where}.function", _OPENAI_NAME))
    return _unique(names, param)


def _function(function: Mapping[str, Any], where: str, pattern: re.Pattern[str],
              schema_key: str = "parameters") -> str:
    name = _tool_name(function.get("name"), f"{where}.name", pattern)
    if function.get("description") is not None:
        string(function["description"], f"{where}.description")
    if function.get(schema_key) is not None:
        json_schema(function[schema_key], f"{where}.{schema_key}")
    if function.get("strict") is not None:
        boolean(function["strict"], f"{where}.strict")
    return name


def _unique(names: list[str], param: str) -> list[str]:
    seen = set()
    for name in names:
        if name in seen:
            raise _refuse(param, f"two tools are named {name!r}")
        seen.add(name)
    return names


def responses_tools(value: Any, param: str) -> list[str]:
    names = []
    for index, tool in enumerate(array(value, param, 512)):
        where = f"{param}[{index}]"
        tool = obj(tool, where)
        if tool.get("type") != "function":
            raise _refuse(f"{where}.type", f"{tool.get('type')!r} tools are not supported by a local model "
                          "(only 'function')")
        names.append(_function(tool, where, _OPENAI_NAME))
    return _unique(names, param)


def anthropic_tools(value: Any, param: str) -> list[str]:
    names = []
    for index, tool in enumerate(array(value, param, 512)):
        where = f"{param}[{index}]"
        tool = obj(tool, where)
        if tool.get("type") not in (None, "custom"):
            raise _refuse(f"{where}.type", f"{tool.get('type')!r} tools are not supported by a local model")
        json_schema(tool.get("input_schema"), f"{where}.input_schema")
        names.append(_function(tool, where, _ANTHROPIC_NAME, "input_schema"))
    return _unique(names, param)


def _forced(name: Any, param: str, tools: list[str]) -> None:
    string(name, param)
    if name not in tools:
        raise _refuse(param, f"names no tool of the request: {name[:80]!r} (tools: {', '.join(tools) or 'none'})")


def openai_tool_choice(value: Any, param: str, tools: list[str], flat: bool = False) -> Any:
    """``none`` / ``auto`` / ``required`` or one named function (nested for chat, flat for Responses)."""
    if isinstance(value, str):
        string(value, param, ("none", "auto", "required"))
        if value == "required" and not tools:
            raise _refuse(param, "'required' needs tools")
        return value
    choice = obj(value, param)
    if choice.get("type") in ("none", "auto", "required"):  # the object form some clients send
        return openai_tool_choice(choice["type"], f"{param}.type", tools, flat)
    string(choice.get("type"), f"{param}.type", ("function",))
    if flat:
        _forced(choice.get("name"), f"{param}.name", tools)
    else:
        _forced(obj(choice.get("function"), f"{param}.function").get("name"), f"{param}.function.name", tools)
    return value


def anthropic_tool_choice(value: Any, param: str, tools: list[str]) -> Any:
    choice = obj(value, param)
    kind = string(choice.get("type"), f"{param}.type", ("auto", "any", "tool", "none"))
    if kind == "tool":
        _forced(choice.get("name"), f"{param}.name", tools)
    elif kind == "any" and not tools:
        raise _refuse(param, "'any' needs tools")
    if choice.get("disable_parallel_tool_use") is not None:
        boolean(choice["disable_parallel_tool_use"], f"{param}.disable_parallel_tool_use")
    return value


def _format(value: Any, param: str, nested: bool) -> Any:
    """OpenAI's ``response_format`` (``nested``: the schema under ``json_schema``) or Responses' ``text.format``."""
    form = obj(value, param)
    kind = string(form.get("type"), f"{param}.type", ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        spec = obj(form.get("json_schema"), f"{param}.json_schema") if nested else form
        where = f"{param}.json_schema" if nested else param
        if spec.get("name") is not None:
            string(spec["name"], f"{where}.name")
        json_schema(spec.get("schema"), f"{where}.schema")
        if spec.get("strict") is not None:
            boolean(spec["strict"], f"{where}.strict")
    return value


def _text(value: Any, param: str) -> Any:
    """Responses' ``text`` and Anthropic's ``output_config``: a ``format`` with the schema beside its type."""
    text = obj(value, param)
    if text.get("format") is not None:
        _format(text["format"], f"{param}.format", nested=False)
    return value


def _system(value: Any, param: str) -> Any:
    if isinstance(value, str):
        return value
    for index, block in enumerate(array(value, param)):
        block = obj(block, f"{param}[{index}]")
        string(block.get("type"), f"{param}[{index}].type", ("text",))
        string(block.get("text"), f"{param}[{index}].text")
    return value


def _ollama_format(value: Any, param: str) -> Any:
    if isinstance(value, str):
        return string(value, param, ("", "json"))
    return json_schema(value, param)


def _input(value: Any, param: str) -> Any:
    if isinstance(value, str):
        return value
    for index, item in enumerate(array(value, param)):
        obj(item, f"{param}[{index}]")
    return value


def _messages(value: Any, param: str) -> Any:
    items = array(value, param)
    if not items:
        raise _refuse(param, "expected at least one message")
    for index, item in enumerate(items):
        obj(item, f"{param}[{index}]")
    return value


def _float(low: float | None = None, high: float | None = None) -> Callable[[Any, str], Any]:
    return lambda value, param: number(value, param, low, high)


def _int(low: int | None = None, high: int | None = None) -> Callable[[Any, str], Any]:
    return lambda value, param: integer(value, param, low, high)


def _str(*choices: str) -> Callable[[Any, str], Any]:
    return lambda value, param: string(value, param, choices)


_ANY_STRINGS = lambda value, param: strings(value, param)  # noqa: E731
_LENGTH = _int(1, MAX_TOKENS)

_COMMON: dict[str, Callable[[Any, str], Any]] = {
    "model": _str(), "stream": boolean, "top_p": _float(0, 1), "seed": seed, "metadata": obj,
    "user": _str(), "store": boolean, "service_tier": _str(), "parallel_tool_calls": boolean,
}

#: protocol (converter NAME) -> parameter -> checker(value, param) returning the converted value
RULES: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "openai-chat": {
        **_COMMON, "messages": _messages, "temperature": _float(0, 2), "n": _one_choice,
        "max_tokens": _LENGTH, "max_completion_tokens": _LENGTH, "stop": lambda v, p: strings(v, p, 16),
        "presence_penalty": _float(-2, 2), "frequency_penalty": _float(-2, 2), "logit_bias": _logit_bias,
        "logprobs": boolean, "top_logprobs": _int(0, 20), "stream_options": _stream_options,
        "response_format": lambda v, p: _format(v, p, nested=True), "guided_choice": _guided_choice,
        "reasoning_effort": _str(), "functions": _unsupported("'functions' (use 'tools')"),
        "function_call": _unsupported("'function_call' (use 'tool_choice')"),
    },
    "openai-responses": {
        **_COMMON, "input": _input, "instructions": _str(), "temperature": _float(0, 2),
        "max_output_tokens": _LENGTH, "max_tokens": _LENGTH, "stop": lambda v, p: strings(v, p, 16),
        "text": _text, "stream_options": _stream_options, "truncation": _str("auto", "disabled"),
        "top_logprobs": _int(0, 20), "max_tool_calls": _int(1), "reasoning": obj, "include": array,
        "previous_response_id": _unsupported("previous_response_id (this server keeps no responses: "
                                             "send the whole conversation in 'input')"),
        "conversation": _unsupported("conversation (send the whole conversation in 'input')"),
        "background": lambda v, p: v if boolean(v, p) is False else _unsupported("background")(v, p),
        "guided_choice": _guided_choice,
    },
    "anthropic": {
        **_COMMON, "messages": _messages, "system": _system, "temperature": _float(0, 1), "max_tokens": _LENGTH,
        "top_k": _int(0), "stop_sequences": lambda v, p: strings(v, p, 16, single=False), "thinking": obj,
        "output_config": _text,
    },
    "ollama": {
        **_COMMON, "messages": _messages, "format": _ollama_format, "options": obj, "keep_alive": lambda v, p: v
        if isinstance(v, str) else number(v, p), "think": lambda v, p: v if isinstance(v, str) else boolean(v, p),
        "max_tokens": _LENGTH,
    },
}

OLLAMA_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "temperature": _float(0, 100), "top_p": _float(0, 1), "top_k": _int(0), "seed": seed,
    "num_predict": _int(-2, MAX_TOKENS), "num_ctx": _int(1), "stop": _ANY_STRINGS, "min_p": _float(0, 1),
    "repeat_penalty": _float(0), "repeat_last_n": _int(-1), "presence_penalty": _float(),
    "frequency_penalty": _float(),
}

_TOOLS = {"openai-chat": chat_tools, "ollama": chat_tools, "openai-responses": responses_tools,
          "anthropic": anthropic_tools}
_REQUIRED = {"openai-chat": ("messages",), "openai-responses": ("input",), "anthropic": ("messages", "max_tokens"),
             "ollama": ("messages",)}


def check(protocol: str, body: Mapping[str, Any], *, max_tokens_limit: int | None = None) -> dict[str, Any]:
    """``body``'s parameters checked against ``protocol``'s rules and converted once.

    :param protocol: a converter's ``NAME`` (``openai-chat``, ``openai-responses``,
        ``anthropic``, ``ollama``).
    :param max_tokens_limit: the longest answer this server gives: a request asking
        for more is refused, one that does not say gets this length.
    :raises ParameterError: naming the first parameter that is wrong.
    """
    rules = RULES[protocol]
    out = {key: value for key, value in obj(body, "request").items() if value is not None}
    for key in _REQUIRED[protocol]:
        if key not in out:
            raise _refuse(key, "this field is required")
    for key, value in list(out.items()):
        rule = rules.get(key)
        if rule is not None:
            out[key] = rule(value, key)
    tools = _TOOLS[protocol](out["tools"], "tools") if "tools" in out else []
    if "tool_choice" in out:
        if protocol == "anthropic":
            anthropic_tool_choice(out["tool_choice"], "tool_choice", tools)
        else:
            openai_tool_choice(out["tool_choice"], "tool_choice", tools, flat=protocol == "openai-responses")
    if protocol == "ollama" and "options" in out:
        options = {k: v for k, v in out["options"].items() if v is not None}
        for key, value in list(options.items()):
            rule = OLLAMA_OPTIONS.get(key)
            if rule is not None:
                options[key] = rule(value, f"options.{key}")
        if options.get("num_predict", 1) < 1:
            del options["num_predict"]  # -1 / -2: no limit of the client's own
        out["options"] = options
    if max_tokens_limit is not None:
        _limit(out, max_tokens_limit)
    return out


def _limit(out: dict[str, Any], limit: int) -> None:
    asked = [(key, out[key]) for key in _LENGTH_KEYS if key in out]
    options = out.get("options")
    if isinstance(options, Mapping) and "num_predict" in options:
        asked.append(("options.num_predict", options["num_predict"]))
    for key, value in asked:
        if value > limit:
            raise _refuse(key, f"{value} is more than this server answers: at most {limit} tokens")
    if not asked:
        out["max_tokens"] = limit
