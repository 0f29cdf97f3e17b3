"""Test data for the dashboard tests: a small realistic database filled through the facade.

(A module with a unique name, so that plugin test folders collected together never
import each other's helpers.)
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from wilson_core import LLM

# The repository's PostgreSQL fixture (tests/postgres_server.py), when it is there: the tests
# parametrized over BACKENDS run on an SQLite file and on a PostgreSQL database (conftest.py
# provides the pg_url fixture).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
try:
    import postgres_server  # noqa: F401
except ImportError:
    BACKENDS = ["sqlite"]
else:
    BACKENDS = ["sqlite", "postgresql"]

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> {{ 7*7 }} {% if 1 %}jinja{% endif %} ${7*7}"
SYSTEM = "You are Wilson, a careful personal-finance assistant. Use the tools to look up real numbers."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_balance",
            "description": "Balance of one account",
            "parameters": {"type": "object", "properties": {"account": {"type": "string"}}, "required": ["account"]},
        },
    }
]
QUESTIONS = [
    "How much did I spend on groceries in March?",
    "What is my checking balance?",
    "Summarise my subscriptions",
    "Can I afford a $1,200 laptop this month?",
    "Which category grew the most since January?",
    "How much do I pay for streaming services?",
]


def seed(db: Path) -> dict[str, str]:
    """A small realistic database; returns the ids the tests refer to."""
    ids: dict[str, str] = {}
    small = LLM(
        "scripted:wilson-small",
        db=str(db),
        script=lambda messages, tools: f"Short answer about: {messages[-1]['content'][:40]}",
    )
    for number, question in enumerate(QUESTIONS):
        reply = small.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], call_type="agent")
        ids[f"q{number}"] = reply.interaction_id
    # a second answer to the first question from another model: a pairing candidate
    big = LLM("scripted:wilson-large", db=str(db), script=["You spent $412.37 on groceries in March, 8% less than February."])
    ids["q0_alt"] = big.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}], call_type="agent").interaction_id
    # an agent run with a tool call and its result
    script = [
        {"content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_balance", "arguments": "{\"account\": \"checking\"}"}}]},
        "Your checking account holds $2,345.10.",
    ]
    agent = LLM("scripted:wilson-small", db=str(db), script=script)
    with agent.run(call_type="agent") as run:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Checking balance please"}]
        first = run.chat(messages, tools=TOOLS)
        run.record_tool_result(first.tool_calls[0], {"account": "checking", "balance": 2345.10})
        messages += [first.message, {"role": "tool", "tool_call_id": "call_1", "name": "get_balance", "content": "{\"balance\": 2345.1}"}]
        second = run.chat(messages, tools=TOOLS)
        ids["tool_call"], ids["tool_answer"], ids["run"] = first.interaction_id, second.interaction_id, run.id
    summarize = LLM("scripted:wilson-small", db=str(db), script=[HOSTILE, "A long summary.\n" + "line of the statement\n" * 60])
    ids["hostile"] = summarize.chat([{"role": "user", "content": "Summarise " + HOSTILE}], call_type="summarize").interaction_id
    ids["long"] = summarize.chat([{"role": "user", "content": "Summarise my statement"}], call_type="summarize").interaction_id
    return ids


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
