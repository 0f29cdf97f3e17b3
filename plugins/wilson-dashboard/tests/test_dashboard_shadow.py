"""The dashboard's shadow view: local and upstream answers to one context side by side (wilson proxy shadow routes).

Real uvicorn server; the answers are captured through wilson_core.capture in runs carrying the
proxy's shadow metadata, on an SQLite file and on a PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from dashboard_testdata import BACKENDS, seed

import wilson_core
from wilson_core.store import sink

SYSTEM = {"role": "system", "content": "Categorise the transaction."}


def answer(db, line: str, content: str, provider: str = "openai"):
    return wilson_core.record_call(provider=provider, model="m", messages=[SYSTEM, {"role": "user", "content": line}],
                                   content=content, call_type="categorize", db=str(db))


@pytest.fixture(params=BACKENDS)
def seeded_db(request, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    db = tmp_path / "wilson.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    ids = seed(db)
    upstream = answer(db, "UBER 12.00", "Transport")
    with wilson_core.run(call_type="categorize", metadata={"shadow_of": upstream.id, "route": "tuned"}):
        local = answer(db, "UBER 12.00", " transport", provider="llamacpp")
    other = answer(db, "TESCO", "Groceries")
    with wilson_core.run(call_type="categorize", metadata={"shadow_of": other.id, "route": "tuned"}):
        wrong = answer(db, "TESCO", "Dining", provider="llamacpp")
    ids.update(upstream=upstream.id, local=local.id, other=other.id, wrong=wrong.id)
    yield db, ids
    sink.forget_stores()


def client_for(served) -> httpx.Client:
    client = httpx.Client(base_url=served.base, follow_redirects=False, timeout=30)
    assert client.get(f"/?token={served.token}").status_code == 303
    return client


def test_shadow_endpoint_gives_both_answers_from_either_side(served):
    client, ids = client_for(served), served.ids
    for asked in (ids["upstream"], ids["local"]):
        data = client.get(f"/api/interactions/{asked}/shadow").json()
        assert len(data["items"]) == 1
        item = data["items"][0]
        assert (item["upstream"]["id"], item["shadow"]["id"]) == (ids["upstream"], ids["local"])
        assert (item["upstream"]["response_content"], item["shadow"]["response_content"]) == ("Transport", " transport")
        assert (item["upstream"]["provider"], item["shadow"]["provider"]) == ("openai", "llamacpp")
        assert item["route"] == "tuned" and item["exact_match"] is True
        assert client.get(f"/api/interactions/{asked}").json()["shadows"] == 1
    wrong = client.get(f"/api/interactions/{ids['other']}/shadow").json()["items"]
    assert [(i["shadow"]["id"], i["exact_match"]) for i in wrong] == [(ids["wrong"], False)]


def test_an_interaction_without_shadow_has_none_and_unknown_ids_are_404(served):
    client = client_for(served)
    plain = next(v for k, v in served.ids.items() if k not in {"upstream", "local", "other", "wrong"})
    assert client.get(f"/api/interactions/{plain}/shadow").json() == {"items": []}
    assert client.get(f"/api/interactions/{plain}").json()["shadows"] == 0
    missing = client.get("/api/interactions/no-such-id/shadow")
    assert missing.status_code == 404 and "no-such-id" in missing.text


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_the_interaction_view_shows_the_shadow_panel_side_by_side(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                                "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.goto(served.login_url)
            tab.wait_for_selector("#rows tr.current")
            tab.click(f'#rows tr[data-id="{served.ids["local"]}"]')
            # the row shown before had its own panel (TESCO): wait for the clicked row's one
            tab.locator("#shadow-panel .shadow-upstream", has_text="Transport").wait_for()
            panel = tab.wait_for_selector("#shadow-panel .shadow-pair")
            upstream = tab.locator("#shadow-panel .shadow-upstream").inner_text()
            local = tab.locator("#shadow-panel .shadow-local").inner_text()
            assert "Upstream" in upstream and "openai:m" in upstream and "Transport" in upstream
            assert "Local" in local and "llamacpp:m" in local and "transport" in local
            assert "same answer" in panel.inner_text() and "route tuned" in panel.inner_text()
            assert errors == [], errors
        finally:
            browser.close()
