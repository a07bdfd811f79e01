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
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from ui_browser import BrowserRun, add_browser_args

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
    add_browser_args(ap)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"kpis": {}, "tabs": {}, "errors": [], "ready_states": [], "spans": 0, "span_text": None,
           "instruction": None, "start_s": None, "times": [], "screenshots": [], "error": None}
    run = BrowserRun("ui_dashboard", a.out, res)
    step, shot = run.step, run.shot

    def failed_response(r) -> None:  # callbacks and videos that the server answered with an error
        if r.status >= 400 and ("_dash-update-component" in r.url or "/media/" in r.url):
            res["errors"].append(f"HTTP {r.status} {r.url}")

    with run.page(a.chromium, a.timeout) as page:
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
            run.failed(page, e)
    print(json.dumps(res), flush=True)
    return 0 if res["error"] is None and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
