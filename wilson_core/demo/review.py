"""The demo's reviewer: what a person does in the dashboard, written as rules.

Everything goes through the annotation API (never the database directly):
stars from checking each answer against the ledger, another answer asked for
where the first was poor, corrections where that one is poor too, and pairs
harvested from answers to the same context whose stars differ.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from . import agent, finance

if TYPE_CHECKING:
    from wilson_core.records import Interaction
    from wilson_core.store import Store

WHO = {"source": "rule", "annotator": "demo-reviewer"}


def stars(interaction: Interaction) -> int | None:
    """1-5 stars for one answer, checked against the ledger; ``None`` if there is nothing to check."""
    answer = (interaction.response_content or "").strip()
    if interaction.call_type == "categorize":
        truth = finance.true_category(interaction.user_prompt or "")
        if truth is None:
            return None
        if answer == truth:
            return 5
        return 2 if truth in answer else 1
    question = agent.question_for(_question_text(interaction))
    if question is None:
        return None
    if interaction.tool_calls:
        call = interaction.tool_calls[0]
        return 5 if (call.name, call.arguments) == (question.tool, question.arguments) else 1
    return 5 if answer == agent.expected_answer(question) else 1


def correction(interaction: Interaction) -> str | None:
    """The right text answer, where the reviewer can write one."""
    if interaction.call_type == "categorize":
        return finance.true_category(interaction.user_prompt or "")
    question = agent.question_for(_question_text(interaction))
    if question is None or interaction.tool_calls:
        return None
    return agent.expected_answer(question)


def review(store: Store, teacher: Any) -> dict[str, int]:
    """Rate everything; regenerate, correct and pair what was poor.  Returns counts."""
    from wilson_core import annotations

    counts: Counter[str] = Counter()
    poor: list[Interaction] = []
    for interaction in list(store.iter_interactions("i.status = 'ok'")):
        given = stars(interaction)
        if given is None:
            continue
        annotations.rate(store, interaction.id, given, **WHO)
        counts["rated"] += 1
        if given < 4:
            poor.append(interaction)
    for interaction in poor:
        if interaction.call_type == "categorize":
            retry = annotations.regenerate(store, interaction.id, "scripted:cloud-teacher", script=teacher)
            counts["regenerated"] += 1
            retry_stars = stars(retry) or 1
            annotations.rate(store, retry.id, retry_stars, **WHO)
            counts["rated"] += 1
            if retry_stars >= 4:
                continue
        fixed = correction(interaction)
        if fixed is not None:
            annotations.correct(store, interaction.id, fixed, **WHO)
            counts["corrected"] += 1
    counts["pairs"] = len(annotations.harvest_pairs(store, min_gap=2, annotator=WHO["annotator"]))
    return dict(counts)


def _question_text(interaction: Interaction) -> str:
    return next((str(m.get("content")) for m in interaction.messages if m.get("role") == "user"), "")
