"""The dashboard's HTTP API against a real uvicorn server and a real SQLite database."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from dashboard_testdata import BACKENDS, HOSTILE, seed
from wilson_dashboard.queries import SORTS

from wilson_core import annotations
from wilson_core.annotations import judge


# Every API test runs on an SQLite file and on a PostgreSQL database, when the repository's
# PostgreSQL fixture (tests/postgres_server.py) is there.
@pytest.fixture(params=BACKENDS)
def seeded_db(request, tmp_path: Path) -> tuple[Path | str, dict[str, str]]:
    db = tmp_path / "wilson.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return db, seed(db)


def login(served) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=served.base, follow_redirects=False, timeout=30)
    response = client.get(f"/?token={served.token}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    return client, csrf


def post(client: httpx.Client, csrf: str, path: str, body: dict) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf})


def label_rows(served) -> list[tuple]:
    return [
        tuple(r)
        for r in served.store.connection().execute(
            "SELECT interaction_id, rating, preference, corrected_response, source, status, undone_at IS NOT NULL "
            "FROM annotations ORDER BY rowid"
        )
    ]


def test_the_api_answers_401_without_a_session(served):
    with httpx.Client(base_url=served.base) as client:
        for path in ("/api/interactions", "/api/stats", f"/api/interactions/{served.ids['q0']}", "/api/export/sft"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert "wilson dashboard" in response.json()["error"]
        assert client.get("/").status_code == 401
        assert client.post(f"/api/interactions/{served.ids['q0']}/label", json={"rating": 5}).status_code == 401
    assert label_rows(served) == []


def test_the_token_url_gives_a_session_cookie_and_drops_the_token(served):
    client, _ = login(served)
    cookie = client.cookies.jar
    assert [c.name for c in cookie] == ["wilson_dashboard_session"]
    assert client.get("/api/interactions").status_code == 200
    with httpx.Client(base_url=served.base) as stranger:
        assert stranger.get("/?token=wrong").status_code == 401


def test_state_changing_requests_need_the_csrf_token(served):
    client, csrf = login(served)
    target = f"/api/interactions/{served.ids['q0']}/label"
    assert client.post(target, json={"rating": 5}).status_code == 403
    assert client.post(target, json={"rating": 5}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert label_rows(served) == []
    assert post(client, csrf, target, {"rating": 5}).status_code == 200
    assert label_rows(served) == [(served.ids["q0"], 5, None, None, "human", "accepted", 0)]


def test_a_foreign_host_name_is_refused(served):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    client, _ = login(served)
    assert client.get("/api/interactions", headers={"Host": "evil.example"}).status_code == 400


def test_pages_carry_a_strict_content_security_policy(served):
    client, _ = login(served)
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_every_label_operation_changes_the_database_exactly(served):
    client, csrf = login(served)
    ids = served.ids
    assert post(client, csrf, f"/api/interactions/{ids['q0']}/label", {"rating": 2, "notes": "vague"}).status_code == 200
    data = post(client, csrf, f"/api/interactions/{ids['q0']}/label", {"add_tags": ["groceries"]}).json()
    assert data["labels"][ids["q0"]]["label"]["notes"] == "vague"  # a tag keeps the notes
    refused = post(client, csrf, "/api/pairs", {"chosen_id": ids["q0"], "rejected_id": ids["q1"]})
    assert refused.status_code == 409 and "different contexts" in refused.json()["error"]
    made = post(client, csrf, "/api/pairs", {"chosen_id": ids["q0_alt"], "rejected_id": ids["q0"]}).json()
    assert made["labels"][ids["q0_alt"]]["label"]["preference"] == "chosen"
    assert post(client, csrf, f"/api/interactions/{ids['q1']}/correct", {"response": "$2,345.10"}).status_code == 200
    bad = post(client, csrf, f"/api/interactions/{ids['q1']}/label", {"rating": 6})
    assert bad.status_code == 409 and "1 to 5" in bad.json()["error"]
    assert post(client, csrf, "/api/interactions/nope/label", {"rating": 3}).status_code == 404
    assert post(client, csrf, "/api/bulk", {"ids": [ids["q2"], ids["q3"]], "rating": 4}).json()["written"] == 2
    undone = post(client, csrf, f"/api/interactions/{ids['q0_alt']}/undo", {}).json()
    assert undone["labels"][ids["q0"]]["label"]["preference"] is None
    assert label_rows(served) == [
        (ids["q0"], 2, None, None, "human", "accepted", 0),
        (ids["q0"], 2, None, None, "human", "accepted", 0),
        (ids["q0_alt"], None, "chosen", None, "human", "accepted", 1),
        (ids["q0"], 2, "rejected", None, "human", "accepted", 1),
        (ids["q1"], None, None, "$2,345.10", "human", "accepted", 0),
        (ids["q2"], 4, None, None, "human", "accepted", 0),
        (ids["q3"], 4, None, None, "human", "accepted", 0),
    ]
    pairs = served.store.connection().execute("SELECT chosen_id, undone_at IS NOT NULL FROM pairs").fetchall()
    assert [tuple(p) for p in pairs] == [(ids["q0_alt"], 1)]


def test_judge_proposals_are_accepted_and_rejected_through_the_api(served):
    store = served.store
    verdict = json.dumps({"scores": {"correctness": 4, "helpfulness": 4, "tool_use": 4, "clarity": 4}})
    judge.judge(store, "scripted:judge", ids=[served.ids["q0"], served.ids["q1"]], provider_options={"script": [verdict] * 2})
    client, csrf = login(served)
    proposed = client.get("/api/interactions", params={"judge": "proposed"}).json()["items"]
    assert sorted(i["id"] for i in proposed) == sorted([served.ids["q0"], served.ids["q1"]])
    assert post(client, csrf, "/api/proposals/accept", {"ids": [served.ids["q0"]]}).json()["written"] == 1
    assert post(client, csrf, "/api/proposals/reject", {"ids": [served.ids["q1"]]}).json()["written"] == 1
    assert annotations.pending_proposals(store) == []
    assert client.get("/api/interactions", params={"judge": "proposed"}).json()["items"] == []


def test_keyset_paging_visits_every_row_once_in_every_sort(served):
    client, csrf = login(served)
    post(client, csrf, "/api/bulk", {"ids": [served.ids["q1"], served.ids["q2"]], "rating": 3})
    post(client, csrf, f"/api/interactions/{served.ids['q3']}/label", {"rating": 5})
    total = served.store.count()
    for sort in ("newest", "oldest", "rating_desc", "rating_asc", "slowest", "tokens"):
        seen, cursor = [], None
        while True:
            params = {"sort": sort, "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/interactions", params=params).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == total, sort
        key, direction = SORTS[sort]  # the order the definition of each sort gives
        expected = [
            r[0]
            for r in served.store.connection().execute(
                f"SELECT i.id FROM interactions i ORDER BY {key} {direction}, i.rowid {direction}"
            )
        ]
        assert seen == expected, sort
    best = client.get("/api/interactions", params={"sort": "rating_desc", "limit": 3}).json()["items"]
    assert [i["label"]["rating"] for i in best] == [5, 3, 3]


def test_filters_narrow_the_list_and_the_counts(served):
    client, csrf = login(served)
    ids = served.ids
    post(client, csrf, f"/api/interactions/{ids['q0']}/label", {"rating": 5, "add_tags": ["groceries"]})
    post(client, csrf, f"/api/interactions/{ids['q1']}/label", {"rating": 1})

    def listed(**params):
        return {i["id"] for i in client.get("/api/interactions", params=params).json()["items"]}

    assert listed(call_type="summarize") == {ids["hostile"], ids["long"]}
    assert listed(model="wilson-large") == {ids["q0_alt"]}
    assert listed(annotated="yes") == {ids["q0"], ids["q1"]}
    assert len(listed(annotated="no")) == served.store.count() - 2
    assert listed(min_rating=4) == {ids["q0"]}
    assert listed(max_rating=2) == {ids["q1"]}
    assert listed(tag="groceries") == {ids["q0"]}
    assert listed(run=ids["run"]) == {ids["tool_call"], ids["tool_answer"]}
    assert listed(q="groceries march") == {ids["q0"], ids["q0_alt"]}
    assert listed(q="<script>") == {ids["hostile"]}
    assert listed(since="2999-01-01") == set()
    stats = client.get("/api/stats", params={"annotated": "yes"}).json()
    assert (stats["total"], stats["annotated"]) == (2, 2)
    for params, expected in (({"min_rating": 4}, 1), ({"max_rating": 2}, 1), ({"tag": "groceries"}, 1), ({"judge": "none"}, 11)):
        assert client.get("/api/stats", params=params).json()["total"] == len(listed(**params)) == expected
    bad = client.get("/api/interactions", params={"min_rating": "9"})
    assert bad.status_code == 400 and "min_rating" in bad.json()["error"]


def test_stat_cards_count_exactly_what_the_export_downloads(served):
    from wilson_dashboard.app import export_options
    from wilson_dashboard.queries import Filters

    from wilson_core.exporting import count_records, iter_records

    client, csrf = login(served)
    ids = served.ids
    post(client, csrf, "/api/bulk", {"ids": [ids["q0"], ids["q2"], ids["tool_answer"]], "rating": 5})
    post(client, csrf, f"/api/interactions/{ids['q0_alt']}/label", {"rating": 1})
    post(client, csrf, f"/api/interactions/{ids['q1']}/correct", {"response": "Your checking balance is $2,345.10."})
    stats = client.get("/api/stats").json()
    assert stats["export_error"] is None
    for fmt in ("sft", "dpo", "kto"):
        response = client.get(f"/api/export/{fmt}")
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith(f'attachment; filename="wilson-{fmt}-')
        lines = [json.loads(line) for line in response.text.splitlines()]
        options = export_options(Filters(), fmt)
        assert stats["export"][fmt] == len(lines) == count_records(served.store, options)
        assert lines == list(iter_records(served.store, options))
    assert stats["export"]["sft"] >= 3 and stats["export"]["dpo"] >= 1
    filtered = client.get("/api/stats", params={"call_type": "summarize"}).json()
    assert filtered["export"]["sft"] == 0


def test_the_detail_links_tool_calls_to_their_results(served):
    client, _ = login(served)
    data = client.get(f"/api/interactions/{served.ids['tool_call']}").json()
    call = data["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("get_balance", {"account": "checking"})
    assert json.loads(call["result"]["content"]) == {"account": "checking", "balance": 2345.1}
    assert data["tools"][0]["function"]["name"] == "get_balance"
    assert data["messages"][0]["role"] == "system"


def test_captured_markup_and_template_syntax_are_shown_literally_in_server_pages(served):
    client, _ = login(served)
    run_id = served.store.get_interaction(served.ids["hostile"]).run_id
    page = client.get(f"/runs/{run_id}").text
    assert "<script>window.__pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert "{{ 7*7 }}" in page and "{% if 1 %}jinja{% endif %}" in page and ">49<" not in page
    api = client.get(f"/api/interactions/{served.ids['hostile']}").json()
    assert api["response_content"] == HOSTILE


def test_regenerate_through_the_api_captures_an_alternative(served):
    client, csrf = login(served)
    response = post(
        client, csrf, f"/api/interactions/{served.ids['q1']}/regenerate",
        {"provider": "scripted:wilson-large", "options": {"script": ["Checking: $2,345.10"]}},
    )
    assert response.status_code == 200
    new = response.json()["interaction"]
    assert new["response_content"] == "Checking: $2,345.10"
    alternatives = client.get(f"/api/interactions/{served.ids['q1']}/alternatives").json()
    assert [a["id"] for a in alternatives["items"]] == [new["id"]]
    missing = post(client, csrf, f"/api/interactions/{served.ids['q1']}/regenerate", {})
    assert missing.status_code == 409 and "NAME:MODEL" in missing.json()["error"]


@pytest.mark.parametrize("path", ["/api/export/parquet", "/runs/no-such-run"])
def test_unknown_things_are_404(served, path):
    client, _ = login(served)
    assert client.get(path).status_code == 404


def test_the_date_range_is_inclusive_in_the_list_and_in_the_export_counts(served):
    client, csrf = login(served)
    post(client, csrf, "/api/bulk", {"ids": [served.ids["q0"], served.ids["q2"]], "rating": 5})
    today = served.store.get_interaction(served.ids["q0"]).created_at[:10]
    listed = client.get("/api/interactions", params={"since": today, "until": today}).json()["items"]
    assert len(listed) == served.store.count()
    stats = client.get("/api/stats", params={"since": today, "until": today}).json()
    assert stats["export"]["sft"] == client.get("/api/stats").json()["export"]["sft"] == 2


def test_calls_of_a_deleted_run_are_hidden_and_cannot_be_labelled(served):
    client, csrf = login(served)
    gone = served.ids["q5"]
    run_id = served.store.get_interaction(gone).run_id
    served.store.connection().execute("UPDATE runs SET deleted_at = '2026-01-01T00:00:00+00:00' WHERE id = ?", (run_id,))
    listed = {i["id"] for i in client.get("/api/interactions", params={"limit": 100}).json()["items"]}
    assert gone not in listed and len(listed) == served.store.count() - 1
    refused = post(client, csrf, f"/api/interactions/{gone}/label", {"rating": 5})
    assert refused.status_code == 409 and "was deleted" in refused.json()["error"]
    assert label_rows(served) == []
