"""Records are frozen; the one converter refuses unknown keys and says what is wrong."""

from __future__ import annotations

import attrs
import pytest

from wilson_core import converter
from wilson_core.errors import RecordError
from wilson_core.records import Annotation, Interaction, Run, ToolCall, ToolResult


def make_interaction(**changes) -> Interaction:
    base = Interaction(
        run_id="run1",
        sequence_num=1,
        call_type="agent",
        provider="scripted",
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        response_content="hello",
        tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": "x"})],
        tools=[{"type": "function", "function": {"name": "lookup"}}],
        params={"temperature": 0.2},
        input_tokens=3,
        output_tokens=1,
        total_tokens=4,
    )
    return attrs.evolve(base, **changes)


def test_records_are_frozen_and_changed_with_evolve():
    interaction = make_interaction()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        interaction.response_content = "changed"  # type: ignore[misc]
    changed = attrs.evolve(interaction, response_content="changed")
    assert changed.response_content == "changed"
    assert interaction.response_content == "hello"
    assert changed.id == interaction.id


def test_message_lists_become_tuples_so_a_record_cannot_change_under_a_sink():
    messages = [{"role": "user", "content": "hi"}]
    interaction = make_interaction(messages=messages)
    messages.append({"role": "user", "content": "later"})
    assert len(interaction.messages) == 1
    assert isinstance(interaction.messages, tuple)


def test_system_and_user_prompt_columns_come_from_the_messages():
    interaction = make_interaction()
    assert interaction.system_prompt == "Be brief."
    assert interaction.user_prompt == "hi"
    assert make_interaction(messages=[{"role": "user", "content": "x"}]).system_prompt is None


@pytest.mark.parametrize(
    "record",
    [
        make_interaction(),
        ToolResult(tool_call_id="c1", name="lookup", content="42", arguments={"q": "x"}),
        Run(call_type="agent", metadata={"user": "u1"}),
        Annotation(interaction_id="i1", rating=5, tags=("good",), notes="fine"),
        ToolCall(id="c2", name="f", arguments={}, raw_arguments="{not json"),
    ],
)
def test_every_record_round_trips_through_json(record):
    text = converter.dumps(record)
    assert converter.loads(text, type(record)) == record


def test_an_unknown_key_is_refused_and_named():
    data = converter.unstructure(ToolCall(id="c", name="f"))
    data["colour"] = "blue"
    with pytest.raises(RecordError, match="colour"):
        converter.structure(data, ToolCall)


def test_a_wrong_type_names_the_field():
    data = converter.unstructure(make_interaction())
    data["sequence_num"] = "first"
    with pytest.raises(RecordError, match=r"Interaction\.sequence_num"):
        converter.structure(data, Interaction)


def test_a_missing_field_names_the_field():
    with pytest.raises(RecordError, match=r"ToolCall\.name"):
        converter.structure({"id": "c"}, ToolCall)


def test_arguments_must_be_an_object():
    with pytest.raises(RecordError, match="arguments"):
        converter.structure({"id": "c", "name": "f", "arguments": [1, 2]}, ToolCall)


def test_broken_json_is_a_record_error_with_the_column():
    with pytest.raises(RecordError, match="not valid JSON .* column 2"):
        converter.loads("{oops", ToolCall)


def test_record_errors_are_wilson_errors_the_cli_can_print():
    from wilson_core.errors import WilsonError

    assert issubclass(RecordError, WilsonError)
