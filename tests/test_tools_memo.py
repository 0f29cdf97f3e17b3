"""The store's memo of the last tool list's JSON: a hit must always give the text a fresh encode gives."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from wilson_core.store.encoding import ToolsMemo, _dumps, sha256

TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "strict": True,
            "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
        },
    },
)


def fresh(tools):
    text = _dumps(tools)
    return text, sha256(text)


def test_repeated_tools_hit_and_match_a_fresh_encode():
    memo = ToolsMemo()
    assert memo.encode(TOOLS) == fresh(TOOLS)
    again = copy.deepcopy(TOOLS)
    assert memo.encode(again) == fresh(TOOLS)
    assert memo._last is not None and memo._last[1] == _dumps(TOOLS)


def test_a_tool_dict_edited_in_place_is_encoded_again():
    memo = ToolsMemo()
    tools = copy.deepcopy(TOOLS)
    memo.encode(tools)
    tools[0]["function"]["parameters"]["properties"]["n"]["minimum"] = 2
    assert memo.encode(tools) == fresh(tools)
    tools[0]["function"]["name"] = "other"
    assert memo.encode(tools) == fresh(tools)


def test_numbers_equal_in_python_but_not_in_json_miss():
    memo = ToolsMemo()
    for value in (1, True, 1.0, 0.0, -0.0, 0, False):
        tools = ({"minimum": value},)
        assert memo.encode(tools) == fresh(tools), value


def test_not_plain_json_is_encoded_every_time():
    class Odd(str):
        pass

    memo = ToolsMemo()
    tools = ({"name": Odd("x"), "obj": ValueError("boom")},)
    assert memo.encode(tools) == fresh(tools)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0, 1.0, 1.5]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=12,
)


@given(st.lists(st.lists(st.dictionaries(st.text(max_size=2), json_values, max_size=3), max_size=3), min_size=1))
def test_any_sequence_of_tool_lists_encodes_as_fresh(sequence):
    memo = ToolsMemo()
    for tools in sequence:
        assert memo.encode(tuple(tools)) == fresh(tuple(tools))
