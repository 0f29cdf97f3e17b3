"""Stop sequences for token-by-token local providers (wilson_core.stops): whatever the
token boundaries, the output streamed so far is a prefix of the reply, and the reply ends
just before the first stop sequence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wilson_core.errors import ProviderError
from wilson_core.stops import StopText, stop_sequences


def stream(text: str, cuts: list[int], stops: list[str]) -> tuple[list[str], bool]:
    stopper = StopText(stops)
    shown, stopped = [], False
    for end in [*sorted(c % (len(text) + 1) for c in cuts), len(text)]:
        now, stopped = stopper.cut(text[:end])
        shown.append(now)
        if stopped:
            return shown, True
    shown.append(stopper.cut(text, final=True)[0])
    return shown, False


@given(st.text("ab.\n", max_size=30), st.lists(st.integers(0, 40), max_size=10),
       st.lists(st.text("ab.\n", max_size=4), max_size=3))
def test_streamed_text_never_shows_a_stop_sequence_and_ends_just_before_one(text, cuts, stops):
    shown, stopped = stream(text, cuts, stops)
    final = shown[-1]
    assert all(final.startswith(part) for part in shown)  # what was streamed is never taken back
    assert not any(s and s in final for s in stops)
    if stopped:  # the reply ends just before a stop sequence of the text
        assert any(s and text.startswith(final + s) for s in stops)
    else:
        assert final == text and not any(s and s in text for s in stops)


@given(st.text("ab.\n", max_size=30), st.lists(st.text("ab.\n", min_size=1, max_size=4), max_size=3))
def test_char_by_char_the_reply_ends_at_the_first_stop_to_complete(text, stops):
    shown, _ = stream(text, list(range(len(text) + 1)), stops)
    ends = [text.find(s) + len(s) for s in stops if s in text]
    if ends:
        first = min(ends)  # generation stops as soon as a stop sequence is complete
        assert shown[-1] == text[: min(text[:first].find(s) for s in stops if s in text[:first])]
    else:
        assert shown[-1] == text


def test_stop_parameter_shapes():
    assert stop_sequences(None) == ()
    assert stop_sequences("\n") == ("\n",)
    assert stop_sequences(["a", ""]) == ("a",)
    with pytest.raises(ProviderError, match="stop must be"):
        stop_sequences([1])
    with pytest.raises(ProviderError, match="stop must be"):
        stop_sequences(3)
