"""The demo app's data: bank transactions, their categories, the categorisation prompt.

Transactions are synthetic and deterministic for a seed.  Merchants come in two
tables: those the app meets in its traffic (and the demo trains on), and new
ones it never meets, kept for measuring whether the tuned model generalises.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, NamedTuple

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

#: What each category covers, in the app's own words (no merchant names).
DESCRIPTIONS = {
    "Groceries": "supermarkets, food shops",
    "Dining": "restaurants, cafes, fast food, takeaway",
    "Transport": "taxis, ride hailing, fuel, trains, public transport",
    "Utilities": "electricity, gas, water, phone, internet",
    "Rent": "rent, landlord, housing",
    "Entertainment": "streaming, games, cinema, concerts, event tickets",
    "Health": "pharmacy, doctor, dentist, gym",
    "Shopping": "online shops, clothing, electronics, furniture",
    "Income": "salary, payroll, interest, refunds, dividends",
    "Travel": "airlines, hotels, holiday rentals, car hire",
}

SYSTEM_PROMPT = (
    "You categorise bank transactions for a personal-finance app. "
    "Answer with exactly one category and nothing else. Categories: "
    + "; ".join(f"{name} ({DESCRIPTIONS[name]})" for name in CATEGORIES)
    + "."
)

#: Merchants whose transactions the app sees (and the demo trains on).
_MERCHANTS: dict[str, tuple[str, ...]] = {
    "Groceries": ("LIDL", "ALDI SUED", "REWE MARKT", "TESCO STORES", "CARREFOUR CITY", "EDEKA CENTER",
                  "TRADER JOES", "COSTCO WHOLESALE"),
    "Dining": ("STARBUCKS", "PIZZA NAPOLI", "SUSHI BAR KOI", "MCDONALDS", "CAFE CENTRAL", "BURGER HUT",
               "SUBWAY", "DUNKIN DONUTS"),
    "Transport": ("UBER TRIP", "SHELL FUEL", "DB BAHN TICKET", "CITY METRO PASS", "BOLT RIDE", "ESSO STATION",
                  "CHEVRON GAS", "AMTRAK"),
    "Utilities": ("EON ENERGIE", "VODAFONE MOBILE", "CITY WATER WORKS", "BRITISH GAS", "TELEKOM DSL", "T-MOBILE",
                  "SPECTRUM CABLE"),
    "Rent": ("MIETE WOHNUNG", "RENT PAYMENT FLAT", "HOUSING COOP RENT", "PROPERTY MGMT RENT"),
    "Entertainment": ("NETFLIX.COM", "SPOTIFY AB", "CINEMAXX", "STEAM GAMES", "CONCERT TICKETS", "YOUTUBE PREMIUM",
                      "PLAYSTATION STORE", "AMC THEATRES"),
    "Health": ("APOTHEKE AM MARKT", "DR MUELLER PRAXIS", "BOOTS PHARMACY", "FITNESS FIRST", "RITE AID",
               "PLANET FITNESS"),
    "Shopping": ("AMAZON MKTPLACE", "ZALANDO", "IKEA", "H&M STORE", "MEDIA MARKT", "TARGET", "NIKE STORE",
                 "APPLE STORE"),
    "Income": ("SALARY ACME GMBH", "INTEREST CREDIT", "TAX REFUND", "FREELANCE INVOICE 118", "EMPLOYER DIRECT DEP"),
    "Travel": ("LUFTHANSA", "BOOKING.COM HOTEL", "AIRBNB", "RYANAIR", "HERTZ RENTAL", "UNITED AIRLINES",
               "HILTON HOTELS", "AVIS CAR RENTAL"),
}

#: Merchants the app never sees before evaluation: the tuned model must carry
#: what the pretrained model knows about these names over to the task.
_NEW_MERCHANTS: dict[str, tuple[str, ...]] = {
    "Groceries": ("WHOLE FOODS MARKET", "KROGER", "SAFEWAY"),
    "Dining": ("CHIPOTLE", "BURGER KING", "DOMINOS PIZZA"),
    "Transport": ("LYFT RIDE", "BP PETROL", "YELLOW CAB TAXI"),
    "Utilities": ("VERIZON WIRELESS", "COMCAST INTERNET", "ELECTRICITY BILL"),
    "Rent": ("APARTMENT RENT", "LANDLORD MONTHLY RENT"),
    "Entertainment": ("HULU", "DISNEY PLUS", "TICKETMASTER"),
    "Health": ("CVS PHARMACY", "WALGREENS", "DENTAL CLINIC"),
    "Shopping": ("EBAY", "BEST BUY", "ZARA"),
    "Income": ("PAYROLL DEPOSIT", "DIVIDEND PAYMENT"),
    "Travel": ("DELTA AIR LINES", "EXPEDIA", "MARRIOTT HOTEL"),
}

#: Luhn-valid test card numbers and valid-checksum example IBANs (no real accounts).
_TEST_CARDS = ("4111 1111 1111 1111", "5500 0000 0000 0004", "4012888888881881")
_TEST_IBANS = ("DE89 3704 0044 0532 0130 00", "GB29NWBK60161331926819")


class Transaction(NamedTuple):
    date: str
    merchant: str
    amount: float  # negative for spending
    category: str
    line: str  # as the bank statement shows it, personal data included


def draw(count: int, seed: int = 0, *, new_merchants: bool = False) -> list[Transaction]:
    """``count`` transactions of October 2026, deterministic for ``seed``.

    ``new_merchants=True`` draws from merchants the app never meets in the demo's
    traffic, for the held-out evaluation of generalisation.
    """
    rng = random.Random(seed)
    table = _NEW_MERCHANTS if new_merchants else _MERCHANTS
    drawn = []
    for _ in range(count):
        category = rng.choice(CATEGORIES)
        merchant = rng.choice(table[category])
        euros = rng.randint(3, 250) if category not in ("Rent", "Income") else rng.randint(600, 3200)
        amount = round(euros + rng.randint(0, 99) / 100, 2) * (1 if category == "Income" else -1)
        date = f"2026-10-{rng.randint(1, 28):02d}"
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
        line = f"{date} {merchant}{extra} {amount:+.2f} EUR"
        drawn.append(Transaction(date, merchant, amount, category, line))
    return drawn


def transactions(count: int, seed: int = 0, *, new_merchants: bool = False) -> Iterator[tuple[str, str]]:
    """``(statement line, true category)`` pairs: :func:`draw` as the app reads it."""
    for transaction in draw(count, seed, new_merchants=new_merchants):
        yield transaction.line, transaction.category


#: The categoriser's structured output, sent with every request as a real app would: the
#: answer is exactly one category.  A local model enforces it while decoding (see
#: :mod:`wilson_core.constraints`); the cloud teacher is only told in the prompt.
CATEGORISE_PARAMS: dict[str, Any] = {"guided_choice": list(CATEGORIES)}


def merchant_name(merchant: str) -> str:
    """A merchant's name as a bank feed's merchant field gives it: ``SAFEWAY`` -> ``Safeway``.

    Statement lines are upper case, and a small model knows brands by their usual
    spelling: asked about "Safeway" SmolLM2-135M says a food company, about "SAFEWAY"
    it makes something up.  Words without a vowel stay as they are (``CVS``, ``BP``).
    """
    return " ".join(word if not any(c in "AEIOUY" for c in word) else word.capitalize()
                    for word in merchant.split())


def categorise_messages(transaction: str) -> list[dict[str, Any]]:
    """The app's categorisation request for one statement line.

    Beside the raw line the app sends the merchant's name, as its bank feed gives it
    (aggregators return a cleaned ``merchant_name`` with each transaction; the demo's
    stand-in reads it from its merchant tables).
    """
    merchant = merchant_of(transaction)
    content = f"Transaction: {transaction}"
    if merchant is not None:
        content += f"\nMerchant: {merchant_name(merchant)}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": content},
    ]


def merchant_of(text: str) -> str | None:
    """The known or new merchant named in ``text`` (a statement line or a prompt)."""
    upper = text.upper()
    for table in (_MERCHANTS, _NEW_MERCHANTS):
        for merchants in table.values():
            for merchant in merchants:
                if merchant in upper:
                    return merchant
    return None


def true_category(text: str) -> str | None:
    """The right category for the merchant named in ``text``, or ``None``."""
    merchant = merchant_of(text)
    if merchant is None:
        return None
    for table in (_MERCHANTS, _NEW_MERCHANTS):
        for category, merchants in table.items():
            if merchant in merchants:
                return category
    return None
