"""Checks of the message shapes TRL and chat templates expect, shared by the formats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


def check_tool_call(call: Any, where: str, *, string_arguments: bool = False) -> list[str]:
    if not isinstance(call, Mapping) or call.get("type") != "function":
        return [f"{where}: a tool call must be {{'type': 'function', 'function': {{...}}}}"]
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return [f"{where}: a tool call needs function.name"]
    arguments = function.get("arguments")
    if string_arguments and not isinstance(arguments, str):
        return [f"{where}: function.arguments must be a JSON string in this format"]
    if not string_arguments and not isinstance(arguments, Mapping):
        return [f"{where}: function.arguments must be an object (TRL and chat templates want a dict)"]
    return []


def check_messages(
    messages: Any, field: str, *, string_arguments: bool = False, roles: tuple[str, ...] = ROLES
) -> list[str]:
    """Problems of a list of chat messages (empty list when fine)."""
    if not isinstance(messages, list) or not messages:
        return [f"{field} must be a non-empty list of messages"]
    problems: list[str] = []
    for index, message in enumerate(messages):
        where = f"{field}[{index}]"
        if not isinstance(message, Mapping):
            problems.append(f"{where} must be an object")
            continue
        role = message.get("role")
        if role not in roles:
            problems.append(f"{where}: role {role!r} is not one of {', '.join(roles)}")
            continue
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            problems.append(f"{where}: content must be text")
        if role == "tool":
            if not isinstance(content, str):
                problems.append(f"{where}: a tool message needs its result as text content")
        for call_index, call in enumerate(message.get("tool_calls") or ()):
            if role != "assistant":
                problems.append(f"{where}: only assistant messages have tool_calls")
                break
            problems += check_tool_call(
                call, f"{where}.tool_calls[{call_index}]", string_arguments=string_arguments
            )
        if role == "assistant" and not content and not message.get("tool_calls"):
            problems.append(f"{where}: an assistant message needs content or tool_calls")
    return problems


def check_tools(tools: Any, *, required: bool = True) -> list[str]:
    if tools is None and not required:
        return []
    if not isinstance(tools, list):
        return ["tools must be a list of tool schemas"]
    problems = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            problems.append(f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
    return problems


def tools_or_none(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    tools = record.get("tools")
    return list(tools) if tools else None
