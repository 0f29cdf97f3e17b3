"""Built-in text for tiny models and small demo data sets (no downloads).

Everything is generated from small hand-written lists with a seeded random
generator, so the same seed always gives the same text.  The corpus mixes
plain English about money, bank transaction lines, categorisation answers and
JSON tool calls, the language of a personal-finance agent.
"""

from __future__ import annotations

import json
import random
from typing import Any

CATEGORIES = (
    "Groceries",
    "Dining",
    "Transport",
    "Utilities",
    "Rent",
    "Entertainment",
    "Shopping",
    "Health",
    "Travel",
    "Income",
    "Subscriptions",
    "Insurance",
)

#: merchant -> category (descriptions are built from these).
MERCHANTS: dict[str, str] = {
    "WHOLE FOODS MARKET": "Groceries",
    "TRADER JOES": "Groceries",
    "SAFEWAY STORE": "Groceries",
    "ALDI SUPERMARKET": "Groceries",
    "LIDL": "Groceries",
    "STARBUCKS": "Dining",
    "CHIPOTLE MEXICAN GRILL": "Dining",
    "MCDONALDS": "Dining",
    "PIZZA EXPRESS": "Dining",
    "SUSHI BAR KYOTO": "Dining",
    "UBER TRIP": "Transport",
    "LYFT RIDE": "Transport",
    "SHELL OIL": "Transport",
    "METRO TRANSIT CARD": "Transport",
    "CITY PARKING GARAGE": "Transport",
    "PACIFIC GAS ELECTRIC": "Utilities",
    "CITY WATER DEPT": "Utilities",
    "COMCAST INTERNET": "Utilities",
    "VERIZON WIRELESS": "Utilities",
    "OAKWOOD APARTMENTS RENT": "Rent",
    "PROPERTY MGMT LLC": "Rent",
    "AMC THEATRES": "Entertainment",
    "STEAM GAMES": "Entertainment",
    "TICKETMASTER": "Entertainment",
    "BOWLING CENTER": "Entertainment",
    "AMAZON MKTPLACE": "Shopping",
    "TARGET STORE": "Shopping",
    "IKEA": "Shopping",
    "BEST BUY": "Shopping",
    "CVS PHARMACY": "Health",
    "WALGREENS": "Health",
    "DENTAL CARE CLINIC": "Health",
    "CITY GYM MEMBERSHIP": "Health",
    "DELTA AIR LINES": "Travel",
    "MARRIOTT HOTEL": "Travel",
    "AIRBNB": "Travel",
    "HERTZ CAR RENTAL": "Travel",
    "ACME CORP PAYROLL": "Income",
    "DIRECT DEPOSIT SALARY": "Income",
    "INTEREST PAYMENT": "Income",
    "NETFLIX.COM": "Subscriptions",
    "SPOTIFY": "Subscriptions",
    "ADOBE CREATIVE CLOUD": "Subscriptions",
    "ICLOUD STORAGE": "Subscriptions",
    "GEICO AUTO INSURANCE": "Insurance",
    "STATE FARM": "Insurance",
    "LEMONADE RENTERS INS": "Insurance",
}

_CITIES = ("SEATTLE WA", "AUSTIN TX", "DENVER CO", "BOSTON MA", "CHICAGO IL", "PORTLAND OR", "LONDON UK")
_WORDS = (
    "budget saving spending account balance payment card transfer interest monthly weekly "
    "income expense bill receipt refund merchant category report total average summary "
    "goal plan review habit cost price value money cash credit debit loan mortgage tax "
    "invoice subscription grocery restaurant coffee fuel ticket hotel flight insurance "
    "doctor pharmacy rent electricity water internet phone streaming music movie game "
    "the a an of to in for on with at by from this that these those is are was were be "
    "have has had will would can could should may might must do does did not and or but "
    "if then because so when while where which who what how why all each every some any "
    "more most less least many much few little very really quite just only also even still "
    "your my our their his her its we you they he she it i me us them time day week month "
    "year today yesterday tomorrow morning evening night first last next previous new old "
    "good better best bad high low small large long short early late easy hard clear"
).split()
_SENTENCES = (
    "Your {period} spending on {cat} was {amount} dollars, {cmp} than last {period}.",
    "You spent {amount} at {merchant} on {date}.",
    "I moved {amount} to your savings account to keep you on track for your {goal} goal.",
    "The largest expense this {period} was {merchant} for {amount}.",
    "Try to keep {cat} under {amount} dollars per {period}.",
    "A refund of {amount} from {merchant} arrived on {date}.",
    "Your balance is {amount} after the payment to {merchant}.",
    "Most of your {cat} costs come from {merchant}.",
    "Set a budget for {cat} and review it every {period}.",
    "The transaction from {merchant} looks like {cat}.",
)
_GOALS = ("holiday", "emergency fund", "new laptop", "house deposit", "wedding", "car")
_PERIODS = ("week", "month", "quarter", "year")

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "categorize_transaction",
            "description": "Assign a spending category to one bank transaction.",
            "parameters": {
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                },
                "required": ["description", "category"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_spending",
            "description": "Total spending in a category over a period.",
            "parameters": {
                "type": "object",
                "properties": {
                    "category": {"type": "string"},
                    "period": {"type": "string", "enum": list(_PERIODS)},
                },
                "required": ["category"],
            },
        },
    },
]

CATEGORISE_SYSTEM = (
    "You categorise bank transactions. Answer with exactly one category from this list and "
    "nothing else: " + ", ".join(CATEGORIES) + "."
)


def transaction(rng: random.Random) -> tuple[str, str]:
    """A random bank-statement line and its category."""
    merchant = rng.choice(list(MERCHANTS))
    category = MERCHANTS[merchant]
    amount = rng.randint(100, 250000) / 100
    if category == "Income":
        amount = rng.randint(5000, 500000) / 100
    else:
        amount = -amount
    date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    ref = rng.choice(("", f" #{rng.randint(100, 9999)}", f" {rng.choice(_CITIES)}"))
    return f"{date} {merchant}{ref} {amount:.2f} USD", category


def categorisation_conversations(n: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """``n`` conversations: system prompt with the category list, a transaction, the bare category."""
    rng = random.Random(seed)
    result = []
    for _ in range(n):
        line, category = transaction(rng)
        result.append(
            [
                {"role": "system", "content": CATEGORISE_SYSTEM},
                {"role": "user", "content": f"Transaction: {line}"},
                {"role": "assistant", "content": category},
            ]
        )
    return result


def tool_conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` tool-calling conversations (``{"messages", "tools"}``) with tool results."""
    rng = random.Random(seed)
    result = []
    for _ in range(n):
        line, category = transaction(rng)
        if rng.random() < 0.5:
            call = {"name": "categorize_transaction", "arguments": {"description": line, "category": category}}
            tool_reply = json.dumps({"ok": True, "category": category})
            answer = f"I filed it under {category}."
            question = f"Please categorise this: {line}"
        else:
            period = rng.choice(_PERIODS)
            call = {"name": "get_spending", "arguments": {"category": category, "period": period}}
            total = rng.randint(1000, 90000) / 100
            tool_reply = json.dumps({"category": category, "period": period, "total": total})
            answer = f"You spent {total:.2f} dollars on {category} this {period}."
            question = f"How much did I spend on {category} this {period}?"
        result.append(
            {
                "messages": [
                    {"role": "system", "content": "You are Wilson, a careful personal-finance assistant."},
                    {"role": "user", "content": question},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"type": "function", "function": call}],
                    },
                    {"role": "tool", "name": call["name"], "content": tool_reply},
                    {"role": "assistant", "content": answer},
                ],
                "tools": TOOLS,
            }
        )
    return result


def default_corpus(seed: int = 0, size: int = 1500) -> list[str]:
    """Varied plain text: sentences, statement lines, categorisations and tool calls."""
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(size):
        kind = rng.random()
        line, category = transaction(rng)
        merchant = line.split(" ", 1)[1].rsplit(" ", 2)[0]
        if kind < 0.35:
            template = rng.choice(_SENTENCES)
            lines.append(
                template.format(
                    period=rng.choice(_PERIODS),
                    cat=category.lower(),
                    amount=f"{rng.randint(5, 4000)}.{rng.randint(0, 99):02d}",
                    cmp=rng.choice(("more", "less")),
                    merchant=merchant.title(),
                    date=line.split(" ", 1)[0],
                    goal=rng.choice(_GOALS),
                )
            )
        elif kind < 0.55:
            lines.append(f"{line} -> {category}")
        elif kind < 0.7:
            call = {"name": "categorize_transaction", "arguments": {"description": line, "category": category}}
            lines.append("<tool_call>" + json.dumps(call) + "</tool_call>")
        elif kind < 0.8:
            lines.append(json.dumps({"date": line[:10], "merchant": merchant, "category": category}))
        else:
            words = rng.sample(_WORDS, rng.randint(6, 14))
            lines.append(" ".join(words).capitalize() + ".")
    lines.append(CATEGORISE_SYSTEM)
    lines.extend(json.dumps(tool) for tool in TOOLS)
    return lines
