"""A small personal-finance agent, the demo's app.

It categorises bank transactions and summarises spending with a tool.  The
"cloud model" it talks to in the demo is the ``scripted`` provider driven by
:func:`teacher`: right most of the time, wordy some of the time, wrong now and
then, which is what real traffic looks like and what annotation is for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

CATEGORIES = (
    "Groceries",
    "Dining",
    "Transport",
    "Utilities",
    "Rent",
    "Entertainment",
    "Health",
    "Shopping",
    "Income",
    "Travel",
)

SYSTEM_PROMPT = (
    "You categorise bank transactions for a personal-finance app. "
    "Answer with exactly one category from this list and nothing else: "
    + ", ".join(CATEGORIES)
    + "."
)

AGENT_SYSTEM_PROMPT = (
    "You are a personal-finance assistant. Use the tools to look up the user's "
    "transactions before answering, then answer briefly with totals in euros."
)

_MERCHANTS: dict[str, tuple[str, ...]] = {
    "Groceries": ("LIDL", "ALDI SUED", "REWE MARKT", "TESCO STORES", "CARREFOUR CITY", "WHOLE FOODS"),
    "Dining": ("STARBUCKS", "PIZZA NAPOLI", "SUSHI BAR KOI", "MCDONALDS", "CAFE CENTRAL", "BURGER HUT"),
    "Transport": ("UBER TRIP", "SHELL FUEL", "DB BAHN TICKET", "CITY METRO PASS", "BOLT RIDE", "ESSO STATION"),
    "Utilities": ("EON ENERGIE", "VODAFONE MOBILE", "CITY WATER WORKS", "BRITISH GAS", "TELEKOM DSL"),
    "Rent": ("MIETE WOHNUNG", "RENT PAYMENT FLAT", "HOUSING COOP RENT"),
    "Entertainment": ("NETFLIX.COM", "SPOTIFY AB", "CINEMAXX", "STEAM GAMES", "CONCERT TICKETS"),
    "Health": ("APOTHEKE AM MARKT", "DR MUELLER PRAXIS", "BOOTS PHARMACY", "FITNESS FIRST"),
    "Shopping": ("AMAZON MKTPLACE", "ZALANDO", "IKEA", "H&M STORE", "MEDIA MARKT"),
    "Income": ("SALARY ACME GMBH", "INTEREST CREDIT", "TAX REFUND", "FREELANCE INVOICE 118"),
    "Travel": ("LUFTHANSA", "BOOKING.COM HOTEL", "AIRBNB", "RYANAIR", "HERTZ RENTAL"),
}

#: Luhn-valid test card numbers and valid-checksum example IBANs (no real accounts).
_TEST_CARDS = ("4111 1111 1111 1111", "5500 0000 0000 0004", "4012888888881881")
_TEST_IBANS = ("DE89 3704 0044 0532 0130 00", "GB29NWBK60161331926819")

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_transactions",
            "description": "List the user's transactions in a month, optionally of one category.",
            "parameters": {
                "type": "object",
                "properties": {
                    "month": {"type": "string", "description": "YYYY-MM"},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                },
                "required": ["month"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_balance",
            "description": "The current balance of one account.",
            "parameters": {
                "type": "object",
                "properties": {"account": {"type": "string"}},
                "required": ["account"],
            },
        },
    },
]


def transactions(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``(transaction line, true category)`` pairs, deterministic for a seed."""
    rng = random.Random(seed)
    for _ in range(count):
        category = rng.choice(CATEGORIES)
        merchant = rng.choice(_MERCHANTS[category])
        amount = rng.randint(3, 250) if category not in ("Rent", "Income") else rng.randint(600, 3200)
        sign = "+" if category == "Income" else "-"
        day = rng.randint(1, 28)
        # Real statements carry personal data: card numbers, IBANs, e-mails.
        # The export's redaction must take them out before anything is trained.
        extra = ""
        roll = rng.random()
        if roll < 0.15:
            extra = f" CARD {rng.choice(_TEST_CARDS)}"
        elif roll < 0.25 and category in ("Rent", "Income", "Utilities"):
            extra = f" IBAN {rng.choice(_TEST_IBANS)}"
        elif roll < 0.3:
            extra = " REF jane.doe@example.com"
        yield f"2026-10-{day:02d} {merchant}{extra} {sign}{amount}.{rng.randint(0, 99):02d} EUR", category


def categorise_messages(transaction: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Transaction: {transaction}"},
    ]


def true_category(transaction: str) -> str | None:
    upper = transaction.upper()
    for category, merchants in _MERCHANTS.items():
        if any(m in upper for m in merchants):
            return category
    return None


def teacher(seed: int = 0) -> Any:
    """The scripted "cloud model": a function of (messages, tools) for the scripted provider."""
    rng = random.Random(seed)

    def reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Any:
        last = messages[-1]
        if tools:
            return _agent_turn(messages)
        text = str(last.get("content") or "")
        category = true_category(text) or "Shopping"
        roll = rng.random()
        if roll < 0.6:
            return category
        if roll < 0.85:
            return f"Looking at this transaction, I would say the category is probably {category}."
        wrong = rng.choice([c for c in CATEGORIES if c != category])
        return wrong

    return reply


def _agent_turn(messages: list[dict[str, Any]]) -> Any:
    tool_messages = [m for m in messages if m.get("role") == "tool"]
    if not tool_messages:
        return {
            "content": None,
            "tool_calls": [
                {
                    "id": "call_tx_1",
                    "type": "function",
                    "function": {
                        "name": "get_transactions",
                        "arguments": json.dumps({"month": "2026-10", "category": "Dining"}),
                    },
                }
            ],
        }
    data = json.loads(tool_messages[-1]["content"])
    total = sum(abs(t["amount"]) for t in data)
    return f"You spent {total:.2f} EUR on Dining in October 2026 across {len(data)} transactions."


def run_tool(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's side of the tools: a fixed small ledger."""
    if name == "get_transactions":
        category = arguments.get("category")
        rows = [
            {"date": line[:10], "description": line[11:].rsplit(" ", 2)[0], "amount": -float(line.split()[-2].lstrip("+-"))}
            for line, cat in transactions(30, seed=7)
            if category in (None, cat)
        ]
        return rows
    if name == "get_balance":
        return [{"account": arguments.get("account", "main"), "balance": 2480.15}]
    raise KeyError(name)
