"""Dashboard benchmark: how long a page of the Training tab takes with 100k interactions.

Run with ``python bench/bench_dashboard.py [--rows 100000] [--quick] [--json PATH]``
(needs the wilson-dashboard plugin installed; ``--quick``: 20,000 rows).  Builds a real database with N
interactions (3 call types, 4 models, 10% rated, tags, a few judge
proposals), serves the dashboard with uvicorn and measures, each against a
baseline in the same run:

(a) the SQL of one page (50 rows) deep in the list: keyset paging (what the
    dashboard does) against LIMIT/OFFSET (the baseline) at the same position;
(b) ``GET /api/interactions`` over HTTP for page 1 and a deep page, with
    filters (unrated only, rating >= 4, call type, full-text search, sorted
    by rating), against the cost of a bare ``SELECT count(*)`` scan;
(c) ``GET /api/stats`` (counts and export record counts), and the three
    export counts of the stat cards alone: ``count_records`` against counting
    through the export pipeline (the baseline);
(d) in headless Chromium (when /usr/bin/chromium exists): from navigation to
    the first 50 rows drawn, and the time of one keypress rating round trip.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import Report, Target, add_arguments

CALL_TYPES = ("agent", "summarize", "categorize")
MODELS = ("gpt-4o-mini", "gpt-4o", "llama3.2:3b", "qwen2.5:7b")
WORDS = "groceries rent salary coffee streaming budget savings invoice refund transfer utilities travel".split()


def build(path: Path, rows: int) -> dict:
    from wilson_core import annotations, open_store
    from wilson_core.records import Interaction

    store = open_store(path)
    rng = random.Random(7)
    system = {"role": "system", "content": "You are Wilson, a finance assistant. " * 40}
    ids: list[str] = []
    started = time.perf_counter()
    batch: list[Interaction] = []
    run_id = None
    for n in range(rows):
        if n % 5 == 0:
            run_id = f"run{n:07d}"
        words = " ".join(rng.choice(WORDS) for _ in range(12))
        interaction = Interaction(
            run_id=run_id,
            sequence_num=n % 5 + 1,
            call_type=CALL_TYPES[n % 3],
            provider="openai" if n % 4 < 2 else "ollama",
            model=MODELS[n % 4],
            messages=[system, {"role": "user", "content": f"Question {n}: {words}?"}],
            response_content=f"Answer {n}: {words}. " * 3,
            input_tokens=40 + n % 50,
            output_tokens=20 + n % 30,
            total_tokens=60 + n % 80,
            duration_ms=float(100 + n % 900),
            created_at=f"2026-{1 + n * 11 // rows:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.{n:06d}+00:00",
        )
        batch.append(interaction)
        ids.append(interaction.id)
        if len(batch) == 2000:
            store.write_interactions(batch)
            batch = []
    if batch:
        store.write_interactions(batch)
    built = time.perf_counter() - started
    rated = ids[:: 10]
    for start in range(0, len(rated), 1000):
        chunk = rated[start : start + 1000]
        for stars in range(1, 6):
            part = [i for k, i in enumerate(chunk) if k % 5 == stars - 1]
            annotations.annotate_many(store, part, rating=stars, add_tags=["bench"] if stars == 5 else ())
    labelled = time.perf_counter() - started - built
    return {"store": store, "ids": ids, "build_s": built, "label_s": labelled}


def timed(fn, repeat: int = 5) -> float:
    """Median wall time in ms."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


#: responsiveness targets (ms): a JSON page and a stored keypress feel instant, a page load prompt
PAGE_MS, KEYPRESS_MS, LOAD_MS = 250, 100, 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-browser", action="store_true")
    add_arguments(parser)
    args = parser.parse_args()
    if args.quick and args.rows == parser.get_default("rows"):
        args.rows = 20_000
    report = Report.from_args("dashboard", args)

    import httpx
    import uvicorn
    from wilson_dashboard import queries
    from wilson_dashboard.app import Settings, create_app

    from wilson_core.store import search

    folder = Path(tempfile.mkdtemp(prefix="wilson-bench-dashboard-"))
    db = folder / "wilson.db"
    data = build(db, args.rows)
    store = data["store"]
    conn = store.connection()
    print(f"database: {args.rows:,} interactions, {store.count('annotations'):,} labels, "
          f"{db.stat().st_size / 1e6:.0f} MB (built in {data['build_s']:.1f} s, labelled in {data['label_s']:.1f} s)")
    started = time.perf_counter()
    indexed = search.sync(store)
    print(f"full-text index: first sync of {indexed:,} rows {time.perf_counter() - started:.2f} s; "
          f"an up-to-date sync {timed(lambda: search.sync(store)):.2f} ms")

    # (a) keyset against OFFSET at the same depth
    depth = args.rows // 2
    filters = queries.Filters()
    row = conn.execute(
        "SELECT created_at, rowid FROM interactions ORDER BY created_at DESC, rowid DESC LIMIT 1 OFFSET ?",
        (depth - 1,),
    ).fetchone()
    cursor = queries.encode_cursor(row[0], row[1])
    keyset = timed(lambda: queries.page(conn, filters, cursor=cursor))
    offset_sql = (
        "SELECT i.id FROM interactions i LEFT JOIN runs r ON r.id = i.run_id WHERE r.deleted_at IS NULL "
        "ORDER BY i.created_at DESC, i.rowid DESC LIMIT 51 OFFSET ?"
    )
    offset = timed(lambda: conn.execute(offset_sql, (depth,)).fetchall())
    assert [i["id"] for i in queries.page(conn, filters, cursor=cursor)["items"]] == [
        r[0] for r in conn.execute(offset_sql, (depth,)).fetchall()[:50]
    ]
    report.add(f"page SQL at row {depth:,}", f"one 50-row page deep in {args.rows:,} interactions, keyset paging "
               "(what the dashboard does), median of 5", keyset, unit="ms", baseline=offset,
               baseline_name="LIMIT/OFFSET at the same position", target=Target("ratio", "<=", 1.0))

    # (b), (c) over HTTP
    token = "bench"
    port = 3141 + 1000 + random.randrange(1000)
    app = create_app(Settings(db=str(db), token=token))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    scan = timed(lambda: conn.execute("SELECT count(*) FROM interactions WHERE duration_ms >= 0").fetchone())
    results = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        client.get(f"/?token={token}")
        deep = client.get("/api/interactions", params={"cursor": cursor}).json()
        assert len(deep["items"]) == 50
        cases = {
            "page 1, newest first": {},
            f"page at row {depth:,} (keyset cursor)": {"cursor": cursor},
            "unrated only": {"annotated": "no"},
            "rating >= 4": {"min_rating": "4"},
            "call type + model": {"call_type": "summarize", "model": "gpt-4o"},
            "full-text search 'refund salary'": {"q": "refund salary"},
            "sorted by rating": {"sort": "rating_desc"},
        }
        print(f"(b) GET /api/interactions (50 rows, JSON over HTTP), baseline = one count(*) scan {scan:.1f} ms:")
        for name, params in cases.items():
            response = client.get("/api/interactions", params=params)
            assert response.status_code == 200, response.text
            ms = timed(lambda params=params: client.get("/api/interactions", params=params))
            results[name] = ms
            report.add(f"GET /api/interactions: {name}", f"50 rows as JSON over HTTP from {args.rows:,} "
                       "interactions, median of 5", ms, unit="ms", baseline=scan,
                       baseline_name="one count(*) scan", target=Target("value", "<=", PAGE_MS),
                       note=f"{len(response.json()['items'])} rows")
        stats_ms = timed(lambda: client.get("/api/stats"), repeat=3)
        stats = client.get("/api/stats").json()
        report.add("GET /api/stats", "the stat cards' counts (export record counts included), median of 3",
                   stats_ms, unit="ms", baseline=scan, baseline_name="one count(*) scan",
                   note=f"total {stats['total']:,}, annotated {stats['annotated']:,}, export {stats['export']} "
                        f"{stats['export_error'] or ''}".strip())

    from wilson_dashboard.app import export_options

    from wilson_core.exporting import count_records
    from wilson_core.exporting.pipeline import count_by_pipeline

    for fmt in ("sft", "dpo", "kto"):
        options = export_options(queries.Filters(), fmt)
        counts = (count_records(store, options), count_by_pipeline(store, options), stats["export"][fmt])
        fast = timed(lambda options=options: count_records(store, options), repeat=3)
        slow = timed(lambda options=options: count_by_pipeline(store, options), repeat=3)
        same = len(set(counts)) == 1
        report.add(f"stat card count: {fmt}", "count_records for the stat card, median of 3; must equal the "
                   "pipeline's count", fast, unit="ms", baseline=slow, baseline_name="counting through the pipeline",
                   target=Target("ratio", "<=", 1.0), passed=False if not same else None,
                   note=f"{counts[0]:,} records" + ("" if same else f"; counts differ: {counts}"))

    chromium = Path("/usr/bin/chromium")
    if not args.no_browser and chromium.exists():
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            )
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/?token={token}")
            page.wait_for_selector("#rows tr.current")
            loads = []
            for _ in range(3):
                started = time.perf_counter()
                page.reload()
                page.wait_for_selector("#rows tr.current")
                page.wait_for_function("document.querySelectorAll('#rows tr').length === 50")
                loads.append((time.perf_counter() - started) * 1000)
            page.wait_for_load_state("networkidle")
            keys = []
            for _ in range(5):
                before = store.count("annotations")
                started = time.perf_counter()
                page.keyboard.press("4")
                while store.count("annotations") == before:
                    time.sleep(0.002)
                keys.append((time.perf_counter() - started) * 1000)
            report.add("browser: page load", f"headless Chromium, reload to the first 50 rows drawn, "
                       f"{args.rows:,} interactions, median of 3", statistics.median(loads), unit="ms",
                       target=Target("value", "<=", LOAD_MS))
            report.add("browser: keypress rating", "headless Chromium, from pressing 4 to the rating stored in "
                       "the database, median of 5", statistics.median(keys), unit="ms",
                       target=Target("value", "<=", KEYPRESS_MS))
            browser.close()
    server.should_exit = True
    thread.join(timeout=10)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
