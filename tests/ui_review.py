"""Browser end-to-end check of one Label Studio review task, in headless Debian Chromium (Playwright).

Not a pytest module: run it with the "browser" venv (configs/venvs/browser.txt):

    $(scripts/venv.sh browser)/bin/python tests/ui_review.py --url http://127.0.0.1:8089 \\
        --email vla-data@localhost --password-file WORK/labelstudio/password \\
        --project-id 1 --task-id 1 --text "new instruction" --out OUT/ui

It logs in through the web form, opens the task in the labeling UI, waits for the three <video> views to be
ready and the prediction's timeline regions to be listed, selects the first span, replaces its subtask
instruction with --text (committed with Shift+Enter: plain Enter inserts a newline, leaving the box discards the
edit), submits, and waits for POST /api/tasks/<id>/annotations. Screenshots go to --out. Prints one JSON line:
{"videos", "videos_ready", "regions", "edited_region", "submitted", "annotation_id", "screenshots", "error"}.
Exit 0 only if 3 videos are ready, regions > 0 and the submit returned 201.

Selectors rely on Label Studio 1.23.2's frontend (lsf-* classes and data-testid attributes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from ui_browser import BrowserRun, add_browser_args

N_VIEWS = 3
REGION = ".lsf-outliner .lsf-tree__node_type_timelineregion"  # one per timeline span in the Regions panel
SUBMIT = 'button[aria-label="Submit current annotation"]'
READY = f"(vs => vs.length >= {N_VIEWS} && vs.every(v => v.readyState >= 2))([...document.querySelectorAll('video')])"


class Failed(RuntimeError):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="Label Studio base URL, e.g. http://127.0.0.1:8089")
    ap.add_argument("--email", required=True)
    pw_arg = ap.add_mutually_exclusive_group(required=True)
    pw_arg.add_argument("--password")
    pw_arg.add_argument("--password-file", type=Path, help="e.g. WORK/labelstudio/password (keeps it off argv)")
    ap.add_argument("--project-id", type=int, required=True)
    ap.add_argument("--task-id", type=int, required=True)
    ap.add_argument("--text", required=True, help="new subtask instruction for the first span")
    ap.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    ap.add_argument("--text-name", default="subtask_instruction", help="per-region TextArea name in the config")
    add_browser_args(ap)
    a = ap.parse_args()
    password = a.password if a.password is not None else a.password_file.read_text().strip()
    a.out.mkdir(parents=True, exist_ok=True)
    base, ms = a.url.rstrip("/"), a.timeout * 1000
    res = {"videos": 0, "videos_ready": 0, "regions": 0, "edited_region": None, "submitted": False,
           "annotation_id": None, "screenshots": [], "error": None}
    run = BrowserRun("ui_review", a.out, res)
    step, shot = run.step, run.shot

    with run.page(a.chromium, a.timeout) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            step("log in")
            page.goto(f"{base}/user/login/")
            page.fill("input[name=email]", a.email)
            page.fill("input[name=password]", password)
            with page.expect_navigation(wait_until="commit"):  # a 302 away on success, the form again if not
                page.click("button[type=submit]")
            if "/user/login" in page.url:
                raise Failed(f"login as {a.email} failed (still on {page.url})")

            step(f"open task {a.task_id}")
            page.goto(f"{base}/projects/{a.project_id}/data?task={a.task_id}")
            # LS keeps the <video> elements hidden (it paints their frames on a canvas): check readyState, not
            # visibility.
            try:
                page.wait_for_function(READY, timeout=ms)
            except PlaywrightError:
                pass  # reported below through the counts
            states = page.eval_on_selector_all("video", "vs => vs.map(v => v.readyState)")
            res["videos"], res["videos_ready"] = len(states), sum(s >= 2 for s in states)
            step(f"videos {res['videos']}, ready {res['videos_ready']} (readyState {states})")

            if res["videos"] != N_VIEWS or res["videos_ready"] != N_VIEWS:
                res["regions"] = page.locator(REGION).count()
                raise Failed(f"expected {N_VIEWS} ready videos, got {res['videos_ready']} of {res['videos']}")
            page.wait_for_selector(REGION)
            while res["regions"] != (n := page.locator(REGION).count()):  # until the list stops growing
                res["regions"] = n
                page.wait_for_timeout(500)
            step(f"regions {res['regions']}")
            shot(page, "1-loaded.png")

            step("select the first span and edit its instruction")
            page.locator(REGION).first.click()
            # The Info panel names the selected region: its id (seg0 for our predictions) follows the label.
            region_id = page.locator(".lsf-detailed-region").first.locator(
                "xpath=.//*[contains(@class,'lsf-labels-list')]/../../span")
            try:  # informational only
                res["edited_region"] = region_id.inner_text(timeout=5000).strip() or None
            except PlaywrightError:
                step("could not read the selected region's id from the Info panel")
            # The per-region TextArea of the selected span: a text view with an Edit button, then a <textarea>.
            content = page.locator(f'[data-testid="htx-textbox-content"][name^="{a.text_name}:"]')
            content.first.wait_for()
            if content.count() != 1:
                raise Failed(f"expected one {a.text_name} text box for the selected span, got {content.count()}")
            page.locator('[data-testid="textarea-region"]').filter(has=content).locator(
                '[data-testid="htx-textbox-edit-button"]').click()
            editor = page.locator(f'textarea[data-testid="htx-textbox-input"][name^="{a.text_name}:"]')
            editor.fill(a.text)
            editor.press("Shift+Enter")  # commits; Enter would add a newline, blur would discard
            editor.wait_for(state="detached")
            shown = content.inner_text().strip()
            if shown != a.text.strip():
                raise Failed(f"edit not committed: text box shows {shown!r}")
            shot(page, "2-edited.png")

            step("submit")
            with page.expect_response(lambda r: r.request.method == "POST"
                                      and re.search(rf"/api/tasks/{a.task_id}/annotations/?(\?|$)", r.url)) as rinfo:
                page.click(SUBMIT)
            resp = rinfo.value
            if resp.status != 201:
                raise Failed(f"submit answered {resp.status}: {resp.text()[:500]}")
            res["submitted"], res["annotation_id"] = True, resp.json().get("id")
            step(f"submitted annotation {res['annotation_id']}")
            try:  # the UI reloads the task after a submit: let it show the submitted annotation for the shot
                page.wait_for_selector(REGION, timeout=min(ms, 20_000))
                page.wait_for_function(READY, timeout=min(ms, 20_000))
            except PlaywrightError:
                pass
            shot(page, "3-submitted.png")
        except (Failed, PlaywrightError) as e:
            run.failed(page, e, page_errors=errors)
    print(json.dumps(res), flush=True)
    ok = res["videos"] == N_VIEWS and res["videos_ready"] == N_VIEWS and res["regions"] > 0 and res["submitted"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
