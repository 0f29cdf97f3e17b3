"""A small hand-written store for tests, docs and demos of the export formats.

:func:`build_sample_store` writes interactions that cover what exporters must
get right: a multi-step agent run with two tools of different parameters and
a failed tool call, a corrected answer to a call without a system prompt with
non-ASCII text, an explicit preference pair, a failed LLM call, a deleted run
and a judge proposal.  Labels are written through
:mod:`wilson_core.annotations`, as the dashboard and CLI write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.records import Interaction, ToolCall, ToolResult

SYSTEM = "You are Wilson, a careful personal-finance assistant."

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_transactions",
            "description": "Find transactions by category and month.",
            "parameters": {
                "type": "object",
                "properties": {
                    "category": {"type": "string"},
                    "month": {"type": "string", "description": "YYYY-MM"},
                },
                "required": ["category", "month"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_balance",
            "description": "Current balance of one account.",
            "parameters": {
                "type": "object",
                "properties": {"account": {"type": "string", "enum": ["checking", "savings"]}},
                "required": ["account"],
            },
        },
    },
]

QUESTION = "How much did I spend on groceries in October, and what is my checking balance?"
FINAL = "You spent 212.40 EUR on groceries in October; your checking balance is 1,234.56 EUR."
UNICODE_PROMPT = "Catégorise : « Café Müller » 4,50 € ☕ — 日本語も"
CORRECTION = "Restaurants & Cafés 🍰"
SUMMARY_PROMPT = "Summarize my week of spending in one sentence."


@frozen
class SampleIds:
    """Ids of the interesting interactions in the sample store."""

    agent: tuple[str, str, str]
    corrected: str
    chosen: str
    rejected: str
    failed: str
    deleted: str
    judged: str
    agent_run: str


def build_sample_store(path: str | Path) -> tuple[Any, SampleIds]:
    """Create the sample database at ``path``; return the open store and the ids."""
    from wilson_core import annotations, open_store

    store = open_store(path)
    search = ToolCall(id="call_search", name="search_transactions",
                      arguments={"category": "groceries", "month": "2026-10"})
    balance = ToolCall(id="call_balance", name="get_balance", arguments={"account": "checking"})
    retry = ToolCall(id="call_balance_2", name="get_balance", arguments={"account": "checking"})
    context1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    step1 = Interaction(run_id="run_agent", sequence_num=1, call_type="agent", provider="openai",
                        model="gpt-4o-mini", messages=context1, response_content=None,
                        tool_calls=[search, balance], tools=TOOLS)
    # the app pastes the tool results back without their names, as many apps do
    context2 = [
        *context1,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_search", "type": "function",
             "function": {"name": "search_transactions", "arguments": search.arguments}},
            {"id": "call_balance", "type": "function",
             "function": {"name": "get_balance", "arguments": balance.arguments}},
        ]},
        {"role": "tool", "tool_call_id": "call_search", "content": "3 transactions, total 212.40 EUR"},
        {"role": "tool", "tool_call_id": "call_balance", "content": "Error: bank API timed out"},
    ]
    step2 = Interaction(run_id="run_agent", sequence_num=2, call_type="agent", provider="openai",
                        model="gpt-4o-mini", messages=context2, response_content="Retrying the balance.",
                        tool_calls=[retry], tools=TOOLS)
    context3 = [
        *context2,
        {"role": "assistant", "content": "Retrying the balance.", "tool_calls": [
            {"id": "call_balance_2", "type": "function",
             "function": {"name": "get_balance", "arguments": retry.arguments}},
        ]},
        {"role": "tool", "tool_call_id": "call_balance_2", "name": "get_balance", "content": "1,234.56 EUR"},
    ]
    step3 = Interaction(run_id="run_agent", sequence_num=3, call_type="agent", provider="openai",
                        model="gpt-4o-mini", messages=context3, response_content=FINAL, tools=TOOLS)
    corrected = Interaction(run_id="run_categorize", sequence_num=1, call_type="categorize",
                            provider="ollama", model="llama3.2",
                            messages=[{"role": "user", "content": UNICODE_PROMPT}],
                            response_content="Dining")
    summary = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": SUMMARY_PROMPT}]
    chosen = Interaction(run_id="run_summary_1", sequence_num=1, call_type="summarize",
                         provider="openai", model="gpt-4o-mini", messages=summary,
                         response_content="You spent 640 EUR, mostly on rent and groceries.")
    rejected = Interaction(run_id="run_summary_2", sequence_num=1, call_type="summarize",
                           provider="openai", model="gpt-4o-mini", messages=summary,
                           response_content="Spending happened.")
    failed = Interaction(run_id="run_failed", sequence_num=1, call_type="agent", provider="openai",
                         model="gpt-4o-mini", messages=context1, status="error",
                         error="RateLimitError: slow down")
    deleted = Interaction(run_id="run_deleted", sequence_num=1, call_type="categorize",
                          provider="ollama", model="llama3.2",
                          messages=[{"role": "user", "content": "Categorise: Shell 60.00 EUR"}],
                          response_content="Transport")
    judged = Interaction(run_id="run_judged", sequence_num=1, call_type="categorize",
                         provider="ollama", model="llama3.2",
                         messages=[{"role": "user", "content": "Categorise: Netflix 12.99 EUR"}],
                         response_content="Subscriptions")
    store.write_interactions([step1])
    store.write_tool_results([
        ToolResult(tool_call_id="call_search", name="search_transactions", interaction_id=step1.id,
                   arguments=search.arguments, content="3 transactions, total 212.40 EUR"),
        ToolResult(tool_call_id="call_balance", name="get_balance", interaction_id=step1.id,
                   arguments=balance.arguments, content="Error: bank API timed out", is_error=True),
    ])
    store.write_interactions([step2])
    store.write_tool_results([
        ToolResult(tool_call_id="call_balance_2", name="get_balance", interaction_id=step2.id,
                   arguments=retry.arguments, content="1,234.56 EUR"),
    ])
    store.write_interactions([step3, corrected, chosen, rejected, failed, deleted, judged])

    annotations.rate(store, step1.id, 5, tags=["tools"])
    annotations.rate(store, step2.id, 4, tags=["tools"])
    annotations.rate(store, step3.id, 5, tags=["tools", "final"])
    annotations.rate(store, corrected.id, 2)
    annotations.correct(store, corrected.id, CORRECTION)
    annotations.rate(store, chosen.id, 3)
    annotations.pair(store, chosen.id, rejected.id)
    annotations.rate(store, deleted.id, 5)
    annotations.annotate(store, judged.id, rating=5, source="judge", annotator="judge:gpt-4o",
                         status="proposed")
    store.mark_run_deleted("run_deleted", "2026-11-01T00:00:00+00:00")
    ids = SampleIds(
        agent=(step1.id, step2.id, step3.id),
        corrected=corrected.id,
        chosen=chosen.id,
        rejected=rejected.id,
        failed=failed.id,
        deleted=deleted.id,
        judged=judged.id,
        agent_run="run_agent",
    )
    return store, ids
