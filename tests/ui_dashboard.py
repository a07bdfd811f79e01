"""Browser end-to-end check of `vla-data dashboard`, in headless Debian Chromium (Playwright).

Not a pytest module: run it with the "browser" venv (configs/venvs/browser.txt):

    $(scripts/venv.sh browser)/bin/python tests/ui_dashboard.py --url http://127.0.0.1:8050 --out OUT/ui

It opens the dashboard, reads the overview's totals, visits every tab and checks that each Plotly chart drew its
SVG, then in the clip browser waits for the three views to load, clicks the first timeline span (a seek), plays
the top view and samples every view's time. Screenshots go to --out. Prints one JSON line:
{"kpis": {id: text}, "tabs": {tab: {"graphs", "drawn"}}, "errors": [...], "ready_states": [...],
 "spans": n, "span_text", "instruction", "start_s", "times": [top, left, right], "screenshots": [...], "error"}.
Exit 0 only if nothing failed on the way; the caller judges the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

TABS = ("overview", "quality", "annotation", "clips")
KPIS = ("kpi-hours", "kpi-episodes", "kpi-clips")
VIDEOS = ("#video-top", "#video-left_wrist", "#video-right_wrist")
READY = f"() => {json.dumps(VIDEOS)}.every(s => document.querySelector(s)?.readyState >= 2)"
# [visible dcc.Graph containers, those of them in which Plotly drew its SVG]
COUNT_GRAPHS = """() => {
    const gs = [...document.querySelectorAll('.dash-graph')].filter(g => g.offsetParent !== null);
    return [gs.length, gs.filter(g => g.querySelector('svg.main-svg')).length];
}"""
READY_STATES = f"() => {json.dumps(VIDEOS)}.map(s => document.querySelector(s)?.readyState ?? -1)"
ERROR_BOXES = ".dash-fe-error, .dash-error-card, .dash-debug-alert"
PLAY_S = 1.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="dashboard URL, e.g. http://127.0.0.1:8050")
    ap.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable (Debian's chromium)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds for each wait")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"kpis": {}, "tabs": {}, "errors": [], "ready_states": [], "spans": 0, "span_text": None,
           "instruction": None, "start_s": None, "times": [], "screenshots": [], "error": None}
    t0 = time.monotonic()

    def step(msg: str) -> None:
        print(f"[ui_dashboard {time.monotonic() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    def shot(page, name: str) -> None:
        path = a.out / name
        page.screenshot(path=str(path), full_page=True)
        res["screenshots"].append(str(path))

    def failed_response(r) -> None:  # callbacks and videos that the server answered with an error
        if r.status >= 400 and ("_dash-update-component" in r.url or "/media/" in r.url):
            res["errors"].append(f"HTTP {r.status} {r.url}")

    if not Path(a.chromium).exists():
        sys.exit(f"ui_dashboard: no browser at {a.chromium} (apt-get install chromium, or pass --chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.chromium, headless=True,
                                     args=["--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(a.timeout * 1000)
        page.on("pageerror", lambda e: res["errors"].append(f"page error: {e}"))
        page.on("response", failed_response)
        try:
            step(f"open {a.url}")
            page.goto(a.url)
            page.wait_for_selector("#kpi-hours")
            res["kpis"] = {k: page.inner_text(f"#{k}").strip() for k in KPIS}
            for tab in TABS:
                step(f"tab {tab}")
                page.click(f"#tab-{tab}")
                if tab == "clips":
                    break
                page.wait_for_function(f"() => {{ const [n, d] = ({COUNT_GRAPHS})(); return n > 0 && n === d; }}")
                n, drawn = page.evaluate(COUNT_GRAPHS)
                res["tabs"][tab] = {"graphs": n, "drawn": drawn}
                res["errors"] += [f"error box: {t}" for t in page.locator(ERROR_BOXES).all_inner_texts()]
                shot(page, f"{TABS.index(tab) + 1}-{tab}.png")

            step("clip browser: wait for the three views")
            try:
                page.wait_for_function(READY)
            finally:
                res["ready_states"] = page.evaluate(READY_STATES)
            spans = page.locator("#timeline .span")
            res["spans"] = spans.count()
            first = spans.first
            res["span_text"] = first.get_attribute("data-text")
            res["start_s"] = float(first.get_attribute("data-start"))
            step(f"seek to the first span at {res['start_s']} s")
            first.click()
            page.wait_for_function("s => Math.abs(document.querySelector('#video-top').currentTime - s) < 0.05 "
                                   "&& !document.querySelector('#video-top').seeking", arg=res["start_s"])
            page.wait_for_function("t => document.querySelector('#instruction').textContent === t",
                                   arg=res["span_text"])
            res["instruction"] = page.inner_text("#instruction")
            step("play")
            page.evaluate("() => document.querySelector('#video-top').play()")
            page.wait_for_timeout(PLAY_S * 1000)
            res["times"] = page.evaluate(f"() => {json.dumps(VIDEOS)}.map(s => document.querySelector(s).currentTime)")
            shot(page, "4-clips.png")
            page.evaluate("() => document.querySelector('#video-top').pause()")
            step(f"times {res['times']}")
        except PlaywrightError as e:
            res["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            step(f"FAILED: {e}")
            try:
                shot(page, "error.png")
            except PlaywrightError:
                pass
        finally:
            browser.close()
    print(json.dumps(res), flush=True)
    return 0 if res["error"] is None and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
