"""The demo's "cloud model": a scripted teacher, named as what it is.

There is no network here, so the app's cloud LLM is the ``scripted`` provider
driven by :func:`teacher`.  Like a real hosted model it is right most of the
time, wordy some of the time and wrong now and then (plausible confusions,
a wrong tool argument, an arithmetic slip), which is what annotation is for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import agent, finance

#: Mistakes a model plausibly makes: the category it confuses each one with.
CONFUSIONS = {
    "Groceries": "Shopping",
    "Dining": "Groceries",
    "Transport": "Travel",
    "Utilities": "Rent",
    "Rent": "Utilities",
    "Entertainment": "Shopping",
    "Health": "Shopping",
    "Shopping": "Groceries",
    "Income": "Shopping",
    "Travel": "Transport",
}

Reply = str | dict[str, Any]


def teacher(seed: int = 0) -> Callable[[list[dict[str, Any]], Any], Reply]:
    """A function of (messages, tools) for ``LLM("scripted:cloud-teacher", script=...)``."""
    rng = random.Random(seed)

    def reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Reply:
        if tools:
            return _agent_turn(messages, rng)
        return _categorise(str(messages[-1].get("content") or ""), rng)

    return reply


def _categorise(prompt: str, rng: random.Random) -> str:
    category = finance.true_category(prompt) or "Shopping"
    roll = rng.random()
    if roll < 0.6:
        return category
    if roll < 0.85:
        return f"Looking at this transaction, I would say the category is probably {category}."
    return CONFUSIONS[category]


def _agent_turn(messages: list[dict[str, Any]], rng: random.Random) -> Reply:
    question_text = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
    question = agent.question_for(question_text)
    if question is None:
        return "Sorry, I can only answer questions about your October 2026 spending."
    results = [m for m in messages if m.get("role") == "tool"]
    if not results:
        arguments = dict(question.arguments)
        if "category" in arguments and rng.random() < 0.2:
            arguments["category"] = CONFUSIONS[arguments["category"]]  # a wrong tool argument
        return {
            "content": None,
            "tool_calls": [{
                "id": f"call_{rng.randrange(16**8):08x}",
                "type": "function",
                "function": {"name": question.tool, "arguments": json.dumps(arguments)},
            }],
        }
    result = json.loads(str(results[-1]["content"]))
    if rng.random() < 0.15:  # an arithmetic slip: a row or a total left out
        result = result[:-1] if isinstance(result, list) else dict(list(result.items())[1:])
    return question.answer(result)


def heldout_accuracy(path: Path, seed: int) -> float | None:
    """The teacher's own exact-match accuracy on a held-out file (what the cloud model scores).

    Each transaction is put to the teacher as the app puts it; its answer is compared with
    the reference as ``wilson eval`` compares (whitespace and case normalised).
    """
    answer = teacher(seed)
    right = total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        reference = str(messages[-1].get("content") or "")
        reply = answer(messages[:-1], None)
        text = reply if isinstance(reply, str) else str(reply.get("content") or "")
        right += _normal(text) == _normal(reference)
        total += 1
    return right / total if total else None


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())
