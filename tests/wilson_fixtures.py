"""Builders for test data in other systems' formats (real files, written with sqlite3)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

#: Open Accountant Wilson's schema, with the columns listed in DESIGN.md.
WILSON_SCHEMA = """
CREATE TABLE llm_interactions (
    id TEXT PRIMARY KEY,
    run_id TEXT,
    sequence_num INTEGER,
    call_type TEXT,
    model TEXT,
    provider TEXT,
    system_prompt TEXT,
    user_prompt TEXT,
    response_content TEXT,
    tool_calls_json TEXT,
    tool_defs_json TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens INTEGER,
    duration_ms INTEGER,
    status TEXT,
    error TEXT,
    created_at TEXT DEFAULT (datetime('now'))
);
CREATE TABLE llm_tool_results (
    id TEXT PRIMARY KEY,
    interaction_id TEXT REFERENCES llm_interactions(id),
    tool_call_id TEXT,
    tool_name TEXT,
    tool_args_json TEXT,
    tool_result TEXT,
    duration_ms INTEGER,
    created_at TEXT DEFAULT (datetime('now'))
);
CREATE TABLE interaction_annotations (
    id TEXT PRIMARY KEY,
    interaction_id TEXT REFERENCES llm_interactions(id),
    rating INTEGER CHECK (rating BETWEEN 1 AND 5),
    preference TEXT CHECK (preference IN ('chosen', 'rejected', 'neutral')),
    pair_id TEXT,
    tags TEXT,
    notes TEXT,
    annotated_at TEXT DEFAULT (datetime('now'))
);
"""

SYSTEM = "You are Wilson, a personal finance assistant. Use the tools to look at the user's data."
TOOL_NAMES = ["get_transactions", "get_balance", "categorize"]


def build_wilson_db(path: Path) -> Path:
    """A Wilson data.db with one agent run (two steps, tool calls and results),
    two standalone summarize calls forming a preference pair, and one failed call."""
    conn = sqlite3.connect(path)
    conn.executescript(WILSON_SCHEMA)
    tools = json.dumps(TOOL_NAMES)
    rows = [
        ("i1", "run-A", 1, "agent", "gpt-4o-mini", "openai", SYSTEM,
         "How much did I spend on groceries in May?", None,
         json.dumps([{"id": "call_1", "name": "get_transactions",
                      "args": {"category": "groceries", "month": "2025-05"}}]),
         tools, 120, 18, 138, 812, "success", None, "2025-06-01 10:00:00"),
        ("i2", "run-A", 2, "agent", "gpt-4o-mini", "openai", SYSTEM,
         "How much did I spend on groceries in May?", "You spent 412.50 EUR on groceries in May.",
         None, tools, 190, 14, 204, 640, "success", None, "2025-06-01 10:00:02"),
        ("s1", "standalone", 1, "summarize", "gpt-4o-mini", "openai", "Summarize in one line.",
         "Rent 900, groceries 412.50, transport 60.", "Mostly rent and groceries.",
         None, None, 30, 6, 36, 300, "success", None, "2025-06-01 11:00:00"),
        ("s2", "standalone", 1, "summarize", "gpt-4o-mini", "openai", "Summarize in one line.",
         "Rent 900, groceries 412.50, transport 60.", "Numbers.",
         None, None, 30, 1, 31, 280, "success", None, "2025-06-01 11:00:05"),
        ("e1", None, 1, "categorize", "gpt-4o-mini", "openai", None,
         "Categorize: SPOTIFY 9.99", None, None, None, None, None, None, 5003, "error",
         "timeout after 5000 ms", "2025-06-01 12:00:00"),
    ]
    conn.executemany(f"INSERT INTO llm_interactions VALUES ({','.join('?' * 18)})", rows)
    conn.execute(
        "INSERT INTO llm_tool_results VALUES (?,?,?,?,?,?,?,?)",
        ("t1", "i1", "call_1", "get_transactions",
         json.dumps({"category": "groceries", "month": "2025-05"}),
         json.dumps([{"amount": 212.5}, {"amount": 200.0}]), 35, "2025-06-01 10:00:01"),
    )
    conn.executemany(
        "INSERT INTO interaction_annotations VALUES (?,?,?,?,?,?,?,?)",
        [
            ("a1", "i2", 5, None, None, json.dumps(["correct", "concise"]), "exact total",
             "2025-06-02 09:00:00"),
            ("a2", "s1", 4, "chosen", "p1", None, None, "2025-06-02 09:01:00"),
            ("a3", "s2", 2, "rejected", "p1", None, "too vague", "2025-06-02 09:01:00"),
        ],
    )
    conn.commit()
    conn.close()
    return path
