"""Shadow answers made by a real `wilson proxy` shadow route, read back by `wilson stats`,
`wilson annotate harvest-pairs --from-shadow` and the store's shadow query (the official openai SDK as the app)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
from proxy_support import start_proxy
from wilson_proxy.routes import Route

from wilson_core import annotations
from wilson_core.cli import main
from wilson_core.store import open_store
from wilson_core.store import shadow as shadow_sql
from wilson_core.testing.upstreams import FakeUpstream, Scripted

LINES = ["UBER 12.00", "TESCO 40.10", "NETFLIX 9.99"]


def tuned(messages, tools):
    """The local model: right (up to case and spaces) on UBER only."""
    return "  FROM   upstream " if messages[-1]["content"].startswith("UBER") else "Dining"


def shadow_pairs(db: Path, expected: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        store = open_store(db)
        try:
            pairs = shadow_sql.shadow_pairs(store.connection())
        finally:
            store.close()
        if len(pairs) >= expected or time.monotonic() > deadline:
            return pairs
        time.sleep(0.05)


def wilson(capsys, db: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--db", str(db), *args])
    return code, capsys.readouterr().out


def test_shadow_route_answers_feed_stats_agreement_and_harvest_pairs(tmp_path, capsys):
    db = tmp_path / "r.db"
    with FakeUpstream(default=Scripted(text="from upstream")) as upstream:
        proxy = start_proxy(upstream, db)
        try:
            proxy.server.set_routes([Route(name="tuned", mode="shadow", provider="scripted:tuned",
                                           options={"script": tuned})])
            client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0,
                                   default_headers={"X-Wilson-Call-Type": "categorize"})
            for count, line in enumerate(LINES, 1):
                reply = client.chat.completions.create(
                    model="m", messages=[{"role": "system", "content": "Categorise."}, {"role": "user", "content": line}])
                assert reply.choices[0].message.content == "from upstream"
                pairs = shadow_pairs(db, count)  # one shadow in flight at most (the route's default cap)
            proxy.wait_recorded()
        finally:
            proxy.stop()
    assert len(pairs) == len(LINES)
    assert all(p["route"] == "tuned" and p["upstream"]["context_hash"] == p["shadow"]["context_hash"] for p in pairs)
    code, out = wilson(capsys, db, "stats", "--json")
    assert code == 0, out
    row = json.loads(out)["shadow"]["categorize"]
    assert (row["pairs"], row["short"], row["exact_match"], row["exact_agreement"]) == (3, 3, 1, 0.3333)
    code, out = wilson(capsys, db, "stats")
    assert "categorize: 3 pair(s), exact match 1/3 short (33%), no judge labels" in out
    wrong = next(p for p in pairs if p["shadow"]["response_content"] == "Dining")
    store = open_store(db)
    try:
        annotations.rate(store, wrong["upstream"]["id"], 5)
        annotations.rate(store, wrong["shadow"]["id"], 2)
    finally:
        store.close()
    code, out = wilson(capsys, db, "annotate", "harvest-pairs", "--from-shadow", "--json")
    assert code == 0, out
    assert [(p["chosen_id"], p["rejected_id"]) for p in json.loads(out)] == [
        (wrong["upstream"]["id"], wrong["shadow"]["id"])]
