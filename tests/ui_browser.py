"""What the headless-Chromium checks (tests/ui_dashboard.py, tests/ui_review.py) share: their --chromium and
--timeout options, a progress log, screenshots, the failure record and the browser launch.

Not a pytest module: the scripts run with the "browser" venv's python (configs/venvs/browser.txt), which puts
tests/ first on sys.path, so they import it as `from ui_browser import BrowserRun, add_browser_args`. Playwright
and the standard library only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright


def add_browser_args(ap: argparse.ArgumentParser) -> None:
    """--chromium (the browser executable) and --timeout (seconds for each wait)."""
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable (Debian's chromium)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds for each wait")


class BrowserRun:
    """One script's run: `step` logs to stderr as `[name  1.2s] msg` (seconds since this object was made), `shot`
    saves a full-page screenshot to `out` and lists its path in res["screenshots"], `failed` records an error in
    res["error"], and `page` launches headless Chromium and hands out one 1600x1000 page."""

    def __init__(self, name: str, out: Path, res: dict) -> None:
        self.name, self.out, self.res = name, out, res
        self.t0 = time.monotonic()

    def step(self, msg: str) -> None:
        print(f"[{self.name} {time.monotonic() - self.t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    def shot(self, page: Page, name: str) -> None:
        path = self.out / name
        page.screenshot(path=str(path), full_page=True)
        self.res["screenshots"].append(str(path))

    def failed(self, page: Page, e: Exception, page_errors: Sequence[str] = ()) -> None:
        """Record `e` as res["error"] (its first line), log it and the first five `page_errors`, and try an
        error.png shot."""
        self.res["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        self.step(f"FAILED: {e}")
        if page_errors:
            self.step("page errors: " + " | ".join(page_errors[:5]))
        try:
            self.shot(page, "error.png")
        except PlaywrightError:
            pass

    @contextmanager
    def page(self, chromium: str, timeout_s: float) -> Iterator[Page]:
        """A page in headless `chromium` (exits the script if it is missing), videos allowed to autoplay, with
        `timeout_s` as the default for each wait; the browser is closed on the way out."""
        if not Path(chromium).exists():
            sys.exit(f"{self.name}: no browser at {chromium} (apt-get install chromium, or pass --chromium)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(timeout_s * 1000)
                yield page
            finally:
                browser.close()
