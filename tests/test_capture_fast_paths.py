"""The shortcuts on the capture path give exactly what the plain code gave."""

from __future__ import annotations

import enum
import hashlib
import json
import threading
from datetime import datetime, timezone
from types import MappingProxyType

import pytest

from wilson_core import records
from wilson_core.errors import RecordError
from wilson_core.messages import clean_text, normalize_messages
from wilson_core.store.encoding import _dumps, context_hash_of


def _reference_utc(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)
    return when.isoformat(timespec="microseconds")


@pytest.mark.parametrize(
    "ns",
    [
        1_795_000_000_000_000_000,  # a whole second
        1_795_000_000_999_999_999,  # the last nanosecond of it: microseconds truncated, not rounded
        1_795_000_001_000_000_001,  # the next second
        1_798_761_599_123_456_789,  # 2026-12-31T23:59:59: the date changes with the next second
        1_798_761_600_000_001_000,
    ],
)
def test_utcnow_writes_the_same_text_as_datetime_isoformat(monkeypatch, ns):
    monkeypatch.setattr(records.time, "time_ns", lambda: ns)
    assert records.utcnow() == _reference_utc(ns)


def test_utcnow_follows_the_clock_across_seconds_and_threads(monkeypatch):
    clock = iter(range(1_795_000_000_000_000_000, 1_795_000_005_000_000_000, 7_654_321))
    lock = threading.Lock()
    seen: list[int] = []

    def fake_time_ns() -> int:
        with lock:
            seen.append(next(clock))
            return seen[-1]

    monkeypatch.setattr(records.time, "time_ns", fake_time_ns)
    texts: list[str] = []

    def work() -> None:
        for _ in range(80):
            texts.append(records.utcnow())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(texts) == sorted(_reference_utc(ns) for ns in seen)


def test_utcnow_lies_between_two_readings_of_the_real_clock():
    before = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    now = records.utcnow()
    after = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    assert before <= now <= after and len(now) == len(before)


def test_clean_text_keeps_plain_text_and_mends_the_rest():
    ascii_text = "How much did I spend?"
    assert clean_text(ascii_text) is ascii_text
    assert clean_text("Café ☕ 日本") == "Café ☕ 日本"
    assert clean_text("bad \ud800 half") == "bad \ufffd half"
    assert clean_text(b"caf\xc3\xa9 \xff") == "café \ufffd"

    class Text(str):
        pass

    assert clean_text(Text("lone \udfff")) == "lone \ufffd"
    assert clean_text(42) == 42 and clean_text(None) is None


def test_normalize_messages_takes_any_mapping_and_refuses_the_rest():
    frozen = MappingProxyType({"role": "user", "content": "hi \ud800"})
    assert normalize_messages([frozen]) == [{"role": "user", "content": "hi \ufffd"}]
    with pytest.raises(RecordError, match="message 1"):
        normalize_messages([{"role": "user", "content": "ok"}, ["role", "user"]])
    with pytest.raises(RecordError, match="message 0"):
        normalize_messages([{"content": "no role"}])


class Colour(enum.Enum):
    RED = "red"


def test_stored_json_is_canonical_and_the_context_hash_does_not_move():
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": Colour.RED}, "c": "☕"}
    expected = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    assert _dumps(value) == expected
    messages = [
        {"role": "system", "content": "You are Wilson."},
        {"role": "user", "content": "Spend on café?"},
    ]
    system = hashlib.sha256(b"You are Wilson.").hexdigest()
    rest = json.dumps(messages[1:], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert context_hash_of(messages) == hashlib.sha256(f"{system}|{rest}".encode()).hexdigest()
