"""What the OpenAI wrapper tests share: the request, tools and scripted replies, and the
two clients (the plain SDK and the wrapped one) pointed at the same local upstream.
(What the calls stored: :mod:`stored_calls`.)"""

from __future__ import annotations

import openai

from wilson_core.integrations import openai as wrapper
from wilson_core.testing.upstreams import Scripted

TOOLS = [
    {"type": "function", "function": {"name": "get_balance", "description": "Balance of an account",
                                      "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_transactions", "description": "Transactions",
                                      "parameters": {"type": "object", "properties": {"month": {"type": "string"}}}}},
]
MESSAGES = [
    {"role": "system", "content": "You are Wilson, a finance assistant."},
    {"role": "user", "content": "What is my balance, and what did I spend in May?"},
]
PARALLEL = Scripted(
    text=None,
    tool_calls=[("get_balance", {"account": "chk-1"}), ("get_transactions", {"month": "2025-05", "note": "ünï"})],
    serial=7,
)


def clients(upstream, db, cls=None, **kwargs):
    cls_raw = openai.OpenAI if cls is None else cls[0]
    cls_wrapped = wrapper.OpenAI if cls is None else cls[1]
    options = dict(base_url=upstream.openai_url, api_key="sk-test", max_retries=0, **kwargs)
    return cls_raw(**options), cls_wrapped(wilson_db=db, **options)


def dumps(items):
    return [item.model_dump() for item in items]
