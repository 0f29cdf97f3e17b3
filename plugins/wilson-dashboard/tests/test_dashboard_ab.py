"""Blind A/B review in real headless Chromium: names hidden until the pick, picks become pairs.

The items come from a pipeline run's eval answers (``wilson_core.pipeline.ab.prepare``),
written here as the evaluate stage writes them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from test_dashboard_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from wilson_core import annotations, open_store
from wilson_core.evaluators.running import load_evaluators
from wilson_core.interfaces import EvalContext
from wilson_core.pipeline import ab

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
SYSTEMS = ("model:m-candidate", "base:tiny-base", "upstream")


def write_run(folder: Path) -> Path:
    (folder / "eval").mkdir(parents=True)
    (folder / "eval" / "scores.json").write_text(json.dumps({"model_id": "m-candidate", "reference": "base:tiny-base"}))
    rows = []
    for number, (item, group) in enumerate([("apple", "fruit"), ("iron", "metal"), ("leek", "vegetable")]):
        rows.append({
            "set": "fixed", "case": f"fixed.jsonl:{number + 1}",
            "messages": [{"role": "system", "content": "Name the group."}, {"role": "user", "content": f"Item: {item}"}],
            "tools": None,
            "upstream": {"role": "assistant", "content": group},
            "candidate": {"role": "assistant", "content": group if number != 2 else HOSTILE},
            "reference": {"role": "assistant", "content": "no idea"},
        })
    rows.append({**rows[0], "case": "same", "candidate": rows[0]["upstream"], "reference": rows[0]["upstream"]})
    (folder / "eval" / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def ab_served(tmp_path):
    import socket

    import uvicorn
    from wilson_dashboard.app import Settings, create_app

    db = tmp_path / "ab.db"
    store = open_store(db)
    made = ab.prepare(store, write_run(tmp_path / "runs" / "001-test"))
    assert made == {"items": 3, "kept": 0, "skipped_identical": 1}
    assert ab.prepare(store, tmp_path / "runs" / "001-test")["kept"] == 3  # idempotent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = f"ab-token-{time.time_ns()}"
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(db=str(db), token=token, annotator="reviewer-1")),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield store, f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def hidden_text(page) -> str:
    """Everything a reviewer could see or inspect: visible text and the whole DOM."""
    return page.inner_text("body") + page.content()


def test_blind_pick_reveal_pairs_tie_and_win_rate(ab_served):
    from playwright.sync_api import sync_playwright

    store, base, token = ab_served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # bypass_csp lets the test's own wait_for_function run (the page script obeys the CSP)
        page = browser.new_context(viewport={"width": 1400, "height": 800}, bypass_csp=True).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/ab?token={token}")
        seen_items = []
        picks = {}
        for step, key in enumerate(["1", "2", "t"]):
            page.wait_for_selector(".ab-answer")
            page.wait_for_function("document.querySelectorAll('.ab-answer').length === 3")
            text = hidden_text(page)
            for system in SYSTEMS:  # no system name anywhere before the pick
                assert system not in text
            assert "m-candidate" not in text and "tiny-base" not in text
            item = ab.next_item(store)  # the item shown: the oldest without a pick
            seen_items.append(item["id"])
            answers = [a["content"] for a in item["answers"]]
            shown = page.locator(".ab-answer .ab-text").all_inner_texts()
            assert shown == answers  # hostile text included: shown as text, never as markup
            page.screenshot(path=str(ARTIFACTS / f"ab-before-pick-{step}.png"))
            page.keyboard.press(key)
            page.wait_for_selector(".ab-system:not([hidden])")
            revealed = page.locator(".ab-system").all_inner_texts()
            assert sorted(revealed) == sorted(SYSTEMS)
            page.screenshot(path=str(ARTIFACTS / f"ab-after-pick-{step}.png"))
            picks[item["id"]] = None if key == "t" else int(key) - 1
            page.keyboard.press("n")
            page.wait_for_function("!document.querySelector('.ab-system:not([hidden])')")
        page.wait_for_selector(".ab-done")
        assert page.title() != "pwned"
        browser.close()
    assert errors == []
    assert len(set(seen_items)) == 3

    # picks became preference pairs: the chosen answer over each other one; a tie makes none
    from wilson_core.store.registry import Registry

    registry = Registry(store)
    for item_id, slot in picks.items():
        item = registry.ab_item(item_id)
        assert item["picks"] == 1
        chosen = next((a for a in item["answers"] if a["slot"] == slot), None)
        made = annotations.pairs_of(store, chosen["interaction_id"]) if chosen else []
        assert len(made) == (2 if slot is not None else 0)
        for pair in made:
            assert pair.chosen_id == chosen["interaction_id"]
            assert store.get_interaction(pair.rejected_id).messages == store.get_interaction(pair.chosen_id).messages

    # the win rate of each system over the picks, with its interval, as the gate's evaluator reads it
    expected = {s: [] for s in SYSTEMS}
    for item_id, slot in picks.items():
        for answer in registry.ab_item(item_id)["answers"]:
            expected[answer["system"]].append(0.5 if slot is None else float(answer["slot"] == slot))
    evaluator = load_evaluators({"ab-win-rate": {}})["ab-win-rate"]
    score = evaluator.evaluate([], [], EvalContext(db=str(store.path), model="m-candidate"))
    assert score.count == 3 and score.value == pytest.approx(sum(expected["model:m-candidate"]) / 3)
    assert score.low <= score.value <= score.high
    against = load_evaluators({"ab-win-rate": {"against": "baseline"}})["ab-win-rate"]
    assert against.evaluate([], [], EvalContext(db=str(store.path), model="m-candidate",
                                                baseline_model="base:tiny-base")).count == 3
