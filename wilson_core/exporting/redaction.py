"""Redaction: secrets and personal data replaced before anything is written.

A rule has a ``name`` (used in placeholders: ``<EMAIL_1>``) and
``find(text) -> iterable of (start, end)`` spans.  Built-in rules cover card
numbers (Luhn-checked), IBANs (mod-97 checked), account numbers, emails,
phone numbers, API keys and bearer tokens; plugins add rules through the
``wilson_redaction_rules`` hook.

Placeholders are consistent inside one example: the same value gets the same
placeholder everywhere in it (prompt, answer, tool arguments and results), and
different values get different numbers.  The report counts replacements per
rule; it never holds the values themselves.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from attrs import evolve

from .examples import Example
from .options import ExportError


class RedactionRule(Protocol):
    name: str

    def find(self, text: str) -> Iterable[tuple[int, int]]: ...


class PatternRule:
    """A regular expression; ``group`` picks the part to replace; ``check`` vets each match."""

    def __init__(
        self, name: str, pattern: str, *, group: int = 0, check: Any = None, flags: int = 0,
        hint: Any = None,
    ):
        self.name = name
        self.regex = re.compile(pattern, flags)
        self.group = group
        self.check = check
        #: a cheap test that is false for text the pattern cannot match (skips the scan)
        self.hint = hint

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if self.hint is not None and not self.hint(text):
            return
        for match in self.regex.finditer(text):
            value = match.group(self.group)
            if value and (self.check is None or self.check(value)):
                yield match.span(self.group)

    def __repr__(self) -> str:
        return f"PatternRule({self.name!r})"


def luhn_valid(value: str) -> bool:
    """True when the digits of ``value`` (13-19 of them) pass the Luhn check."""
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(value: str) -> bool:
    """True for an IBAN whose ISO 13616 mod-97 check passes."""
    compact = re.sub(r"\s", "", value).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


_HAS_DIGIT = re.compile(r"\d").search
_KEY_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "AKIA", "gh", "xox", "AIza", "hf_", "eyJ")
_KEY_WORDS = re.compile(r"(?i)key|secret|token|passw").search


def _has_key_prefix(text: str) -> bool:
    return any(prefix in text for prefix in _KEY_PREFIXES)


def _phone_digits_ok(value: str) -> bool:
    return 7 <= sum(c.isdigit() for c in value) <= 15


_KEY_PATTERNS = "|".join(
    [
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}",  # OpenAI / Anthropic style
        r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe
        r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_-]{35}",  # Google
        r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    ]
)


def builtin_rules() -> list[PatternRule]:
    """The rules every redacting export applies, in priority order."""
    return [
        PatternRule(
            "BEARER_TOKEN", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{12,})", group=1,
            hint=re.compile(r"(?i)bearer").search,
        ),
        PatternRule("API_KEY", _KEY_PATTERNS, hint=_has_key_prefix),
        PatternRule(
            "API_KEY",
            r"(?i)\b(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token|password|passwd)"
            r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9._~+/=!@#$%^&*-]{8,})",
            group=1,
            hint=_KEY_WORDS,
        ),
        PatternRule(
            "EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            hint=lambda text: "@" in text,
        ),
        PatternRule(
            "IBAN",
            r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b",
            check=iban_valid,
            hint=_HAS_DIGIT,
        ),
        PatternRule("CARD", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", check=luhn_valid, hint=_HAS_DIGIT),
        PatternRule(
            "ACCOUNT",
            r"(?i)\b(?:account|acct|a/c|routing|sort[ ]code|bsb)(?:[ ]?(?:number|no\.?|num|#))?"
            r"[\s:#.]{0,4}(\d(?:[ -]?\d){3,19})",
            group=1,
            hint=_HAS_DIGIT,
        ),
        PatternRule(
            "PHONE",
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
            r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\b\d{3}[.-]\d{3}[.-]\d{4})(?!\w)",
            check=_phone_digits_ok,
            hint=_HAS_DIGIT,
        ),
    ]


class Redactor:
    """Applies rules to examples and keeps the export's running report."""

    def __init__(self, rules: Sequence[Any]) -> None:
        self.rules = list(rules)
        self.replaced: Counter[str] = Counter()
        self.examples_changed = 0
        self._values: dict[tuple[str, str], str] = {}
        self._numbers: Counter[str] = Counter()
        self._cache: dict[str, list[tuple[int, int, str]]] = {}

    @classmethod
    def with_plugins(cls) -> Redactor:
        """Built-in rules followed by every rule from the ``wilson_redaction_rules`` hook."""
        from wilson_core.plugins import hook

        rules: list[Any] = builtin_rules()
        for extra in hook().wilson_redaction_rules():
            for rule in extra or ():
                if not isinstance(getattr(rule, "name", None), str) or not callable(getattr(rule, "find", None)):
                    raise ExportError(
                        f"a wilson_redaction_rules plugin returned {rule!r}: a rule needs a "
                        "'name' (text) and a 'find(text)' method"
                    )
                rules.append(rule)
        return cls(rules)

    # -- one text ----------------------------------------------------------

    def _spans(self, value: str) -> list[tuple[int, int, str]]:
        """Non-overlapping matches (cached for long texts that repeat, such as system prompts)."""
        if len(value) < 64:
            return self._find_spans(value)
        spans = self._cache.get(value)
        if spans is None:
            if len(self._cache) >= 1024:
                self._cache.clear()
            spans = self._cache[value] = self._find_spans(value)
        return spans

    def _find_spans(self, value: str) -> list[tuple[int, int, str]]:
        """Non-overlapping matches, leftmost first; the longer (then the earlier rule) wins."""
        found: list[tuple[int, int, int, str]] = []
        for priority, rule in enumerate(self.rules):
            try:
                spans = list(rule.find(value))
            except Exception as exc:  # a plugin's rule: name it instead of a traceback
                raise ExportError(
                    f"redaction rule {rule.name!r} ({type(rule).__module__}) failed: "
                    f"{type(exc).__name__}: {exc}; nothing was written"
                ) from exc
            for start, end in spans:
                if 0 <= start < end <= len(value):
                    found.append((start, -(end - start), priority, rule.name))
        found.sort()
        chosen: list[tuple[int, int, str]] = []
        last_end = -1
        for start, negative_length, _, name in found:
            if start >= last_end:
                chosen.append((start, start - negative_length, name))
                last_end = start - negative_length
        return chosen

    def text(self, value: str) -> str:
        """``value`` with every match replaced by its placeholder for the current example."""
        spans = self._spans(value)
        if not spans:
            return value
        parts: list[str] = []
        position = 0
        for start, end, name in spans:
            secret = value[start:end]
            key = (name, secret)
            placeholder = self._values.get(key)
            if placeholder is None:
                self._numbers[name] += 1
                placeholder = f"<{name}_{self._numbers[name]}>"
                self._values[key] = placeholder
            self.replaced[name] += 1
            parts.append(value[position:start])
            parts.append(placeholder)
            position = end
        parts.append(value[position:])
        return "".join(parts)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        out = dict(message)
        if "content" in out:
            out["content"] = self._value(out["content"])
        if out.get("tool_calls"):
            out["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": self._value(call["function"]["arguments"])}}
                for call in out["tool_calls"]
            ]
        return out

    # -- one example ---------------------------------------------------------

    def example(self, example: Example) -> Example:
        """``example`` with its messages redacted; placeholders are numbered per example."""
        self._values = {}
        self._numbers = Counter()
        before = sum(self.replaced.values())
        result = evolve(
            example,
            prompt=[self._message(m) for m in example.prompt],
            completion=[self._message(m) for m in example.completion],
            rejected=[self._message(m) for m in example.rejected],
        )
        if sum(self.replaced.values()) != before:
            self.examples_changed += 1
            return result
        return example

    def report(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "rules": sorted({rule.name for rule in self.rules}),
            "replaced": dict(sorted(self.replaced.items())),
            "total_replaced": sum(self.replaced.values()),
            "examples_changed": self.examples_changed,
        }
