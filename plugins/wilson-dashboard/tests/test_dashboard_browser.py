"""The Training tab in real headless Chromium: filter, rate with the keyboard, pair, correct, undo, export.

Screenshots are saved under ``$WILSON_TEST_ARTIFACTS`` (default
``test-artifacts/dashboard`` at the repository root).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dashboard_testdata import HOSTILE

from wilson_core import LLM, annotations

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("WILSON_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts")
) / "dashboard"

#: what the next window.prompt() dialogs answer (otherwise they are dismissed).
DIALOG_ANSWERS: list[str] = []

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True, bypass_csp=True)  # test escaping itself, not only the CSP
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("dialog", lambda dialog: dialog.accept(DIALOG_ANSWERS.pop(0)) if DIALOG_ANSWERS else dialog.dismiss())
        tab.goto(served.login_url)
        tab.wait_for_selector("#rows tr.current")
        tab.wait_for_function("document.getElementById('stat-total').textContent !== '-'")
        yield tab
        context.close()
        browser.close()
        assert errors == [], errors


def current_id(page) -> str:
    return page.locator("#rows tr.current").get_attribute("data-id")


def settle(page) -> None:
    """Wait until every queued key action and request has finished."""
    page.evaluate("() => S.chain")
    page.wait_for_function("S.pending === 0")
    page.evaluate("() => S.chain")


def rows_shown(page) -> list[str]:
    return page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)")


def label_versions(served, interaction_id: str) -> list[tuple]:
    return [
        (v.annotation.rating, v.annotation.preference, v.annotation.corrected_response, v.undone_at is not None)
        for v in annotations.history(served.store, interaction_id)
    ]


def test_filter_rate_pair_correct_undo_and_export(served, page):
    ids = served.ids
    page.screenshot(path=str(ARTIFACTS / "training-tab.png"))

    # filter: full-text search narrows the list to the two answers about groceries
    page.fill("#f-q", "groceries")
    page.wait_for_function("document.querySelectorAll('#rows tr').length === 2")
    assert set(rows_shown(page)) == {ids["q0"], ids["q0_alt"]}
    assert page.url.endswith("?q=groceries")
    page.keyboard.press("Escape")  # leave the search box: keys act on the list again
    first, second = rows_shown(page)

    # rate with the keyboard: 4 on the first row (moves on), 2 on the second
    page.keyboard.press("4")
    page.keyboard.press("2")
    settle(page)
    assert label_versions(served, first) == [(4, None, None, False)]
    assert label_versions(served, second) == [(2, None, None, False)]
    assert page.locator(f'#rows tr[data-id="{first}"] .star.on').count() == 4

    # pair: open the side-by-side view from the first answer and keep the left one
    page.keyboard.press("k")
    settle(page)
    assert current_id(page) == first
    page.keyboard.press("p")
    page.wait_for_selector("#compare:not([hidden])")
    page.screenshot(path=str(ARTIFACTS / "pairing.png"))
    page.keyboard.press("c")
    page.wait_for_selector("#compare", state="hidden")
    settle(page)
    pairs = [tuple(r) for r in served.store.connection().execute("SELECT chosen_id, rejected_id, undone_at FROM pairs")]
    assert pairs == [(first, second, None)]
    assert label_versions(served, first)[-1] == (4, "chosen", None, False)
    assert label_versions(served, second)[-1] == (2, "rejected", None, False)

    # correct the response of the current row
    page.keyboard.press("e")
    page.wait_for_selector("#editor:not([hidden])")
    page.fill("#editor-text", "You spent $412.37 on groceries in March <b>8% less</b> than February.")
    page.screenshot(path=str(ARTIFACTS / "correcting.png"))
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#editor", state="hidden")
    settle(page)
    corrected = "You spent $412.37 on groceries in March <b>8% less</b> than February."
    assert label_versions(served, first)[-1] == (4, "chosen", corrected, False)
    page.wait_for_selector("pre.text.corrected")
    assert page.locator("pre.text.corrected").inner_text() == corrected  # shown as text, not markup

    # undo takes the correction back; the pair stays
    page.keyboard.press("u")
    settle(page)
    assert label_versions(served, first)[-1] == (4, "chosen", corrected, True)
    assert annotations.current(served.store, first).corrected_response is None
    assert served.store.connection().execute("SELECT count(*) FROM pairs WHERE undone_at IS NULL").fetchone()[0] == 1

    # export: the SFT download is exactly what the export API writes with these filters
    page.fill("#f-q", "")
    page.keyboard.press("Escape")
    page.wait_for_function("document.querySelectorAll('#rows tr').length > 2")
    page.wait_for_function("document.getElementById('stat-sft').textContent === '1'")
    for fmt, expected in (("sft", 1), ("dpo", 1)):
        with page.expect_download() as info:
            page.click(f"#export-{fmt}")
        lines = [json.loads(line) for line in Path(info.value.path()).read_text().splitlines()]
        assert len(lines) == expected == int(page.inner_text(f"#stat-{fmt}"))
    page.screenshot(path=str(ARTIFACTS / "after-labelling.png"))


def test_hostile_captured_text_is_shown_literally(served, page):
    page.fill("#f-q", "pwned")
    page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
    page.keyboard.press("Escape")
    page.wait_for_function(f"document.querySelector('#detail .facts code')?.textContent === '{served.ids['hostile']}'")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#detail .block pre.text").first.inner_text() == HOSTILE
    assert "{{ 7*7 }}" in page.locator("#rows tr .response").inner_text()
    assert page.locator("#detail img").count() == 0
    page.goto(f"{served.base}/runs/{served.store.get_interaction(served.ids['hostile']).run_id}")
    assert page.evaluate("window.__pwned") is None
    assert HOSTILE in page.locator(".answer pre.text").inner_text()
    page.screenshot(path=str(ARTIFACTS / "run-view-hostile.png"))


def test_rating_100_interactions_takes_100_keypresses(served, page):
    llm = LLM("scripted:bulk", db=str(served.db), script=lambda messages, tools: "ok")
    for number in range(110):
        llm.chat([{"role": "user", "content": f"Question number {number}"}], call_type="bulk")
    page.goto(f"{served.base}/?annotated=no&call_type=bulk")
    page.wait_for_selector("#rows tr.current")
    page.wait_for_function("document.querySelectorAll('#rows tr').length === 50")
    for number in range(100):
        page.keyboard.press(str(number % 5 + 1))
    settle(page)
    rated = served.store.connection().execute(
        "SELECT count(DISTINCT a.interaction_id), count(*) FROM annotations a "
        "JOIN interactions i ON i.id = a.interaction_id WHERE i.call_type = 'bulk'"
    ).fetchone()
    assert tuple(rated) == (100, 100)  # 100 keys: 100 interactions rated once each, pages loaded on the way


def test_the_training_tab_shows_labels_judge_proposals_and_linked_tool_results(served, page):
    ids = served.ids
    store = served.store
    annotations.rate(store, ids["q0_alt"], 5, add_tags=["groceries"])
    annotations.rate(store, ids["q0"], 2, notes="no number given")
    annotations.pair(store, ids["q0_alt"], ids["q0"])
    annotations.rate(store, ids["tool_answer"], 4, add_tags=["tool-use"])
    annotations.correct(store, ids["q3"], "Yes: after rent and bills you keep $1,480 this month.")
    verdict = json.dumps({"scores": {"correctness": 4, "helpfulness": 5, "tool_use": 5, "clarity": 4},
                          "rationale": "Calls get_balance with the right account."})
    from wilson_core.annotations import judge

    judge.judge(store, "scripted:judge-model", ids=[ids["tool_call"], ids["q1"]], provider_options={"script": [verdict] * 2})
    page.goto(f"{served.base}/?call_type=agent&focus={ids['tool_call']}")
    page.wait_for_function(f"document.querySelector('#detail .facts code')?.textContent === '{ids['tool_call']}'")
    page.wait_for_function("document.getElementById('stat-dpo').textContent !== '-'")
    assert page.locator("#detail .toolresult pre.text").inner_text() == '{"account": "checking", "balance": 2345.1}'
    assert page.locator(f'#rows tr[data-id="{ids["tool_call"]}"] .chip.judge').inner_text() == "⚖ 5★ proposed"
    assert page.locator("#detail .judgebox").is_visible()
    page.screenshot(path=str(ARTIFACTS / "training-tab-labelled.png"))
    page.keyboard.press("a")  # accept the judge's proposal from the keyboard
    settle(page)
    assert annotations.current(store, ids["tool_call"], source="judge", annotator="judge:scripted:judge-model").status == "accepted"


def test_bulk_rating_tagging_judge_decisions_and_regenerate_from_the_keyboard(served, page):
    ids = served.ids
    store = served.store
    verdict = json.dumps({"scores": {"correctness": 3, "helpfulness": 3, "tool_use": 3, "clarity": 3}})
    from wilson_core.annotations import judge

    judge.judge(store, "scripted:judge", ids=[ids["q1"], ids["q2"], ids["q3"]], provider_options={"script": [verdict] * 3})
    page.goto(f"{served.base}/?call_type=agent&model=wilson-small&judge=proposed")
    page.wait_for_function("document.querySelectorAll('#rows tr').length === 3")
    shown = rows_shown(page)
    assert set(shown) == {ids["q1"], ids["q2"], ids["q3"]}

    # select two rows with x, rate them both with one key, then tag them from the bulk bar
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    settle(page)
    assert page.inner_text("#bulk-count") == "2"
    page.keyboard.press("3")
    settle(page)
    assert [annotations.current(store, i).rating for i in shown[:2]] == [3, 3]
    assert annotations.current(store, shown[2]) is None
    page.keyboard.press("x")
    page.keyboard.press("k")
    page.keyboard.press("x")
    settle(page)
    page.fill("#bulk-tag", "needs-numbers")
    page.click("#bulk-tag-button")
    settle(page)
    assert [annotations.current(store, i).tags for i in shown[:2]] == [("needs-numbers",)] * 2

    # judge proposals: accept two at once, reject the third with one key
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    settle(page)
    page.keyboard.press("a")
    settle(page)
    page.keyboard.press("j")
    page.keyboard.press("d")
    settle(page)
    statuses = {
        r[0]: r[1]
        for r in store.connection().execute(
            "SELECT interaction_id, status FROM current_annotations WHERE source = 'judge'"
        )
    }
    assert statuses == {shown[0]: "accepted", shown[1]: "accepted", shown[2]: "rejected"}

    # regenerate: ask another provider for an answer to the same context, keep it
    DIALOG_ANSWERS.append("scripted:wilson-large")  # the provider the page asks for
    original = current_id(page)
    page.keyboard.press("g")
    page.wait_for_selector("#compare:not([hidden])")
    page.keyboard.press("r")  # the right one (the new answer) is better
    page.wait_for_selector("#compare", state="hidden")
    settle(page)
    new_id, new_run, new_model, new_context = store.connection().execute(
        "SELECT id, run_id, model, context_hash FROM interactions WHERE id NOT IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "AND call_type = 'agent'",
        [i for k, i in ids.items() if k != "run"],
    ).fetchone()
    old = store.connection().execute("SELECT run_id, context_hash FROM interactions WHERE id = ?", (original,)).fetchone()
    assert (new_model, new_run, new_context) == ("wilson-large", old[0], old[1])
    pair = store.connection().execute("SELECT chosen_id, rejected_id FROM pairs").fetchone()
    assert tuple(pair) == (new_id, original)
