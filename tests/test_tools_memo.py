"""The store's memo of the last tool list's JSON: a hit must always give the text a fresh encode gives."""

from __future__ import annotations

import copy

import pytest
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


any_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from([ValueError("x"), b"ab"]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(-2, 2) | st.none(), inner, max_size=4),
    max_leaves=20,
)


@given(any_values)
def test_dumps_gives_the_text_of_the_json_encoder(value):
    from wilson_core.store.encoding import _ENCODER

    try:
        expected = _ENCODER.encode(value)
    except Exception as exc:  # e.g. keys of mixed types cannot be sorted
        with pytest.raises(type(exc)):
            _dumps(value)
        return
    assert _dumps(value) == expected


def test_dumps_after_a_failure_and_in_threads():
    import threading

    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular"):
        _dumps({"a": cycle})
    shared = {"x": [1, 2.5, "é", None]}
    assert _dumps(shared) == '{"x":[1,2.5,"é",null]}'
    results = []

    def work():
        results.extend(_dumps({"k": shared, "t": TOOLS}) for _ in range(300))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1200 and len(set(results)) == 1
