"""Hostile requests to the dashboard API (real uvicorn server, real SQLite): every bad parameter or
body is a 4xx with a JSON error, never a 500; pages are capped; writes need a same-origin browser;
the Host check fits the bind address; ``regenerate`` takes only browser-safe providers and options.

Before: ``limit=²``, a 5,000-digit limit, ``min_rating=²``, ``{"ids": [[1]]}`` and
``{"options": {"latency_s": "abc"}}`` were 500s with a traceback, ``limit`` had no cap, any local
file could be named as a ``script``, Origin was not checked and ``--host 0.0.0.0`` had no Host check.
"""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SPECIAL = ["\ud800", "\x00", "\u202e", "²", "٣", "-1", "0", "1e9", "9" * 5000, "", " ", "null", "[]", "{}"]
TEXT = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=30))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
GET_PARAMS = ["limit", "min_rating", "max_rating", "annotated", "judge", "sort", "cursor", "q", "since",
              "until", "call_type", "model", "tag", "run", "status"]


def login(base: str, token: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    assert client.get(f"/?token={token}").status_code == 303
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
    return client, csrf


def assert_json_4xx(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "error" in response.json()
    assert "Traceback" not in response.text


def test_the_reported_requests_are_4xx_json(served):
    client, csrf = login(served.base, served.token)
    q0 = served.ids["q0"]
    for query in ("limit=²", "limit=" + "9" * 5000, "min_rating=²", "max_rating=٣", "limit=-1", "limit=1.5"):
        assert_json_4xx(client.get(f"/api/interactions?{query}"))
    assert_json_4xx(client.get("/api/stats?min_rating=²"))
    headers = {"X-CSRF-Token": csrf}
    assert_json_4xx(client.post("/api/proposals/accept", json={"ids": [[1]]}, headers=headers))
    assert_json_4xx(client.post("/api/bulk", json={"ids": [[1]], "rating": 5}, headers=headers))
    assert_json_4xx(client.post("/api/bulk", json={"ids": [q0], "rating": "five"}, headers=headers))
    assert_json_4xx(client.post(f"/api/interactions/{q0}/regenerate",
                                json={"provider": "scripted:m", "options": {"latency_s": "abc"}}, headers=headers))
    assert_json_4xx(client.post(f"/api/interactions/{q0}/correct", json={"response": ["x"]}, headers=headers))


def test_page_sizes_are_capped(served):
    client, _ = login(served.base, served.token)
    response = client.get("/api/interactions?limit=1000000000")
    assert response.status_code == 200
    from wilson_dashboard.queries import MAX_PAGE_SIZE

    assert len(response.json()["items"]) <= MAX_PAGE_SIZE


def test_regenerate_takes_no_file_server_or_unknown_provider_from_the_browser(served, tmp_path):
    client, csrf = login(served.base, served.token)
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"content": "the contents of a local file"}) + "\n")
    target = f"/api/interactions/{served.ids['q0']}/regenerate"
    headers = {"X-CSRF-Token": csrf}
    for body in (
        {"provider": "scripted:m", "options": {"script": str(secret)}},
        {"provider": "openai:gpt-4o-mini", "options": {"base_url": "http://attacker.example/v1"}},
        {"provider": "openai:gpt-4o-mini", "options": {"api_key": "x"}},
        {"provider": "transformers:/etc", "options": {}},
        {"provider": "no-colon", "options": {}},
        {"provider": ["scripted:m"]},
    ):
        assert_json_4xx(client.post(target, json=body, headers=headers))
    count = served.store.connection().execute("SELECT count(*) FROM interactions").fetchone()[0]
    assert "the contents of a local file" not in json.dumps(
        [list(r) for r in served.store.connection().execute("SELECT response_content FROM interactions")])
    assert count == served.store.connection().execute("SELECT count(*) FROM interactions").fetchone()[0]


def test_writes_from_another_origin_are_refused(served):
    client, csrf = login(served.base, served.token)
    target = f"/api/interactions/{served.ids['q0']}/label"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Origin": f"http://127.0.0.1:{served.port + 1}"}):
        response = client.post(target, json={"rating": 5}, headers={"X-CSRF-Token": csrf, **headers})
        assert response.status_code == 403, headers
    same = client.post(target, json={"rating": 5},
                       headers={"X-CSRF-Token": csrf, "Origin": served.base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


def test_the_host_check_stays_on_for_every_bind_address(seeded_db):
    import uvicorn
    from wilson_dashboard.app import Settings, allowed_hosts, create_app

    hosts = allowed_hosts("0.0.0.0")
    assert "127.0.0.1" in hosts and "localhost" in hosts and "evil.example" not in hosts and "*" not in hosts
    assert allowed_hosts("192.0.2.7") == sorted({"127.0.0.1", "localhost", "::1", "[::1]", "192.0.2.7"})
    db, _ = seeded_db
    from dashboard_testdata import free_port

    port = free_port()
    app = create_app(Settings(db=str(db), token="t", loopback_only=False, bind_host="0.0.0.0"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/api/stats", headers={"Host": "evil.example"}).status_code == 400
            assert client.get("/api/stats").status_code == 401  # the right host: on to the session check
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def session(served):
    client, csrf = login(served.base, served.token)
    yield served, client, csrf
    client.close()


@given(params=st.dictionaries(st.sampled_from(GET_PARAMS), TEXT, max_size=4))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_query_is_answered_without_a_server_error(session, params):
    served, client, _ = session
    from urllib.parse import quote

    # raw bytes as a client may send them (a lone surrogate becomes invalid UTF-8)
    query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in params.items())
    for path in ("/api/interactions", "/api/stats", "/api/export/sft"):
        response = client.get(f"{path}?{query}")
        assert response.status_code < 500, (path, params, response.text[:300])
        if response.status_code >= 400:
            assert "error" in response.json()


@given(body=JSON, which=st.sampled_from(["label", "correct", "undo", "regenerate", "bulk", "pairs",
                                         "proposals/accept", "proposals/reject"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_body_is_answered_without_a_server_error(session, body, which):
    served, client, csrf = session
    q0 = served.ids["q0"]
    path = {"bulk": "/api/bulk", "pairs": "/api/pairs", "proposals/accept": "/api/proposals/accept",
            "proposals/reject": "/api/proposals/reject"}.get(which, f"/api/interactions/{q0}/{which}")
    if isinstance(body, dict) and which in ("bulk", "proposals/accept", "proposals/reject") and "ids" not in body:
        body = {**body, "ids": [q0]}
    response = client.post(path, content=json.dumps(body), headers={"X-CSRF-Token": csrf,
                                                                    "content-type": "application/json"})
    assert response.status_code < 500, (path, body, response.text[:300])
    assert "Traceback" not in response.text
    # every page still answers, and the database is sound
    assert client.get("/api/interactions").status_code == 200
    assert client.get(f"/api/interactions/{q0}").status_code == 200
    assert served.store.connection().execute("PRAGMA quick_check").fetchone()[0] == "ok"
