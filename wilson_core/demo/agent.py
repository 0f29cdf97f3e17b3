"""The demo app's agent: spending questions answered with tools over a synthetic ledger.

The tools are the app's own code (:func:`run_tool`); the model only decides which
tool to call with which arguments, then words the answer from the results.
:func:`expected_answer` is the ground truth a reviewer checks answers against.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from .finance import CATEGORIES, Transaction, draw

AGENT_SYSTEM_PROMPT = (
    "You are a personal-finance assistant. Look the user's transactions up with the tools "
    "before answering, then answer in one or two sentences with amounts in EUR."
)

MONTH = "2026-10"

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search_transactions",
            "description": "Transactions of a month whose description contains the query text.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "maxLength": 40,
                              "description": "Text to look for, e.g. a merchant name"},
                    "month": {"type": "string", "minLength": 7, "maxLength": 7, "description": "YYYY-MM"},
                },
                "required": ["query", "month"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "sum_by_category",
            "description": "Total spent per category in a month (or for one category), in EUR.",
            "parameters": {
                "type": "object",
                "properties": {
                    "month": {"type": "string", "minLength": 7, "maxLength": 7, "description": "YYYY-MM"},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                },
                "required": ["month"],
            },
        },
    },
]


def ledger() -> list[Transaction]:
    """The user's account in October 2026 (fixed, so answers can be checked)."""
    return draw(40, seed=7)


def run_tool(name: str, arguments: dict[str, Any]) -> Any:
    """The app's side of a tool call."""
    month = str(arguments.get("month", MONTH))
    rows = [t for t in ledger() if t.date.startswith(month)]
    if name == "search_transactions":
        query = str(arguments.get("query", "")).upper()
        return [
            {"date": t.date, "description": t.merchant, "amount": t.amount, "category": t.category}
            for t in rows
            if query and query in t.merchant
        ]
    if name == "sum_by_category":
        wanted = arguments.get("category")
        totals: dict[str, float] = {}
        for t in rows:
            if t.amount < 0 and wanted in (None, t.category):
                totals[t.category] = round(totals.get(t.category, 0.0) - t.amount, 2)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))
    raise KeyError(f"unknown tool {name!r}")


class Question(NamedTuple):
    text: str
    tool: str
    arguments: dict[str, Any]
    answer: Callable[[Any], str]  # the final answer, worded from the tool's result


def _category_answer(category: str) -> Callable[[Any], str]:
    return lambda totals: f"You spent {totals.get(category, 0.0):.2f} EUR on {category} in October 2026."


def _merchant_answer(merchant: str) -> Callable[[Any], str]:
    def answer(rows: list[dict[str, Any]]) -> str:
        total = sum(-r["amount"] for r in rows)
        return f"You paid {merchant} {len(rows)} times in October 2026, {total:.2f} EUR in all."

    return answer


def _summary_answer(totals: dict[str, float]) -> str:
    top = ", ".join(f"{name} {value:.2f} EUR" for name, value in list(totals.items())[:3])
    return f"In October 2026 you spent {sum(totals.values()):.2f} EUR. The largest categories: {top}."


def questions() -> list[Question]:
    """What the app's users ask, cycled through by the demo's agent runs."""
    merchants = sorted({t.merchant for t in ledger() if t.amount < 0})
    return [
        Question("How much did I spend on Dining in October?", "sum_by_category",
                 {"month": MONTH, "category": "Dining"}, _category_answer("Dining")),
        Question("Summarise my spending in October.", "sum_by_category", {"month": MONTH}, _summary_answer),
        Question(f"How much have I paid {merchants[0]} this month?", "search_transactions",
                 {"query": merchants[0], "month": MONTH}, _merchant_answer(merchants[0])),
        Question("How much went on Groceries in October?", "sum_by_category",
                 {"month": MONTH, "category": "Groceries"}, _category_answer("Groceries")),
        Question(f"What did I spend at {merchants[1]} in October?", "search_transactions",
                 {"query": merchants[1], "month": MONTH}, _merchant_answer(merchants[1])),
        Question("How much did I spend on Transport in October?", "sum_by_category",
                 {"month": MONTH, "category": "Transport"}, _category_answer("Transport")),
    ]


def question_for(text: str) -> Question | None:
    return next((q for q in questions() if q.text == text), None)


def expected_answer(question: Question) -> str:
    """The right final answer: the question's own tool call, worded correctly."""
    return question.answer(run_tool(question.tool, question.arguments))


def tool_message(call_id: str, name: str, result: Any) -> dict[str, Any]:
    return {"role": "tool", "name": name, "tool_call_id": call_id, "content": json.dumps(result)}
