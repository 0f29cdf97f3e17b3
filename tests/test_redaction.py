"""Redaction: secrets never survive, placeholders are consistent inside one example."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from wilson_core.exporting import Example, Redactor, builtin_rules
from wilson_core.exporting.redaction import iban_valid, luhn_valid


def redact(text: str) -> str:
    return Redactor(builtin_rules()).text(text)


def luhn_complete(prefix: list[int]) -> str:
    """``prefix`` followed by the check digit that makes it Luhn-valid."""
    for check in range(10):
        candidate = "".join(map(str, prefix)) + str(check)
        if luhn_valid(candidate):
            return candidate
    raise AssertionError("no check digit")


cards = st.lists(st.integers(0, 9), min_size=12, max_size=18).map(luhn_complete)
separators = st.sampled_from(["", " ", "-"])
words = st.text(alphabet=st.characters(whitelist_categories=("L", "Zs"), max_codepoint=0x2FFF), max_size=30)
emails = st.from_regex(r"[a-z][a-z0-9._+-]{0,15}@[a-z][a-z0-9-]{0,10}\.(com|org|de|io|co\.uk)", fullmatch=True)
keys = st.one_of(
    st.from_regex(r"sk-[A-Za-z0-9]{20,40}", fullmatch=True),
    st.from_regex(r"AKIA[0-9A-Z]{16}", fullmatch=True),
    st.from_regex(r"ghp_[A-Za-z0-9]{36}", fullmatch=True),
    st.from_regex(r"Bearer [A-Za-z0-9._-]{20,40}", fullmatch=True),
)


def grouped(card: str, separator: str) -> str:
    return separator.join(card[i : i + 4] for i in range(0, len(card), 4))


def digit_runs(text: str) -> list[str]:
    return [re.sub(r"\D", "", m) for m in re.findall(r"\d(?:[ -]?\d)*", text)]


@settings(max_examples=150, deadline=None)
@given(before=words, after=words, card=cards, separator=separators)
def test_no_luhn_valid_card_number_survives(before, after, card, separator):
    out = redact(f"{before} {grouped(card, separator)} {after}")
    assert card not in re.sub(r"[ -]", "", out)
    assert not any(13 <= len(run) <= 19 and luhn_valid(run) for run in digit_runs(out))
    assert "<CARD_1>" in out


@settings(max_examples=150, deadline=None)
@given(before=words, after=words, email=emails)
def test_no_email_survives(before, after, email):
    out = redact(f"{before} {email}, {after}")
    assert email not in out and "@" not in out.replace(before, "").replace(after, "")
    assert "<EMAIL_1>" in out


@settings(max_examples=150, deadline=None)
@given(before=words, after=words, key=keys)
def test_no_api_key_or_bearer_token_survives(before, after, key):
    secret = key.split(" ", 1)[-1]
    out = redact(f"{before} {key} {after}")
    assert secret not in out


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(cards, emails), min_size=1, max_size=6), filler=words)
def test_the_same_value_gets_the_same_placeholder_and_different_values_different_ones(values, filler):
    redactor = Redactor(builtin_rules())
    example = Example(
        kind="answer",
        prompt=[{"role": "user", "content": f" {filler} ".join(values)}],
        completion=[{"role": "assistant", "content": " and ".join(reversed(values)),
                     "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"v": values[0]}}}]}],
    )
    out = redactor.example(example)
    prompt_placeholders = re.findall(r"<[A-Z_]+_\d+>", out.prompt[0]["content"])
    answer_placeholders = re.findall(r"<[A-Z_]+_\d+>", out.completion[0]["content"])
    mapping = dict(zip(values, prompt_placeholders, strict=True))
    assert len(set(mapping.values())) == len(mapping)  # distinct values, distinct placeholders
    assert answer_placeholders == [mapping[v] for v in reversed(values)]
    assert out.completion[0]["tool_calls"][0]["function"]["arguments"] == {"v": mapping[values[0]]}


def test_numbering_restarts_for_each_example():
    redactor = Redactor(builtin_rules())
    first = redactor.example(Example(kind="answer", prompt=[{"role": "user", "content": "a@x.com b@x.com"}],
                                     completion=[{"role": "assistant", "content": "ok"}]))
    second = redactor.example(Example(kind="answer", prompt=[{"role": "user", "content": "b@x.com"}],
                                      completion=[{"role": "assistant", "content": "ok"}]))
    assert first.prompt[0]["content"] == "<EMAIL_1> <EMAIL_2>"
    assert second.prompt[0]["content"] == "<EMAIL_1>"
    assert redactor.report()["replaced"] == {"EMAIL": 3} and redactor.report()["examples_changed"] == 2


def test_ibans_accounts_and_phone_numbers_are_replaced():
    text = ("Pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432 from account no. 12345678, "
            "sort code 12-34-56; call +49 30 1234567 or (415) 555-0132.")
    assert redact(text) == (
        "Pay <IBAN_1> or <IBAN_2> from account no. <ACCOUNT_1>, "
        "sort code <ACCOUNT_2>; call <PHONE_1> or <PHONE_2>."
    )
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE00370400440532013000")


def test_ordinary_finance_text_is_left_alone():
    text = "On 2026-11-25 you paid 1,234.56 EUR (ref 2024/118) for 3 items; total 4500.00."
    assert redact(text) == text


def test_a_card_number_that_fails_luhn_is_not_a_card():
    assert redact("order 4111 1111 1111 1112 shipped") == "order 4111 1111 1111 1112 shipped"
    assert redact("card 4111 1111 1111 1111 used") == "card <CARD_1> used"


def test_key_value_secrets_are_replaced_but_the_key_name_stays():
    assert redact('api_key="abcd1234efgh5678" password: hunter22!') == 'api_key="<API_KEY_1>" password: <API_KEY_2>'


def test_every_side_of_a_pair_and_tool_results_are_redacted_with_one_numbering():
    redactor = Redactor(builtin_rules())
    example = Example(
        kind="pair",
        prompt=[{"role": "user", "content": "mail ann@bank.example"},
                {"role": "tool", "name": "lookup", "content": "IBAN DE89370400440532013000", "tool_call_id": "t"}],
        completion=[{"role": "assistant", "content": "Sent to ann@bank.example"}],
        rejected=[{"role": "assistant", "content": "Sent to bob@bank.example from DE89370400440532013000"}],
    )
    out = redactor.example(example)
    assert out.prompt[1]["content"] == "IBAN <IBAN_1>"
    assert out.completion[0]["content"] == "Sent to <EMAIL_1>"
    assert out.rejected[0]["content"] == "Sent to <EMAIL_2> from <IBAN_1>"


def test_long_repeated_texts_are_redacted_the_same_every_time():
    redactor = Redactor(builtin_rules())
    system = "Contact support@bank.example for help. " * 5
    for _ in range(3):
        out = redactor.example(Example(kind="answer", prompt=[{"role": "system", "content": system}],
                                       completion=[{"role": "assistant", "content": "ok"}]))
        assert out.prompt[0]["content"] == system.replace("support@bank.example", "<EMAIL_1>")
    assert redactor.report()["replaced"] == {"EMAIL": 15}
