"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, offline.

Every request that leaves 127.0.0.1 is aborted and counted as a failure, so a page that needs the
network fails its test.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "data" / "runs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: run `make browser-deps` (it installs Debian's chromium package)")
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class PageWatcher:
    """Collects JavaScript errors, console errors and failed or off-machine requests of one page."""

    def __init__(self, page):
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"JavaScript error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.problems.append(f"console error: {msg.text}"))
        page.on("requestfailed", lambda req: self.problems.append(f"request failed: {req.url} ({req.failure})"))
        page.on("response", lambda res: res.status >= 400 and self.problems.append(f"HTTP {res.status}: {res.url}"))

        def offline(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")):
                route.continue_()
            else:
                self.problems.append(f"network request off this machine: {url}")
                route.abort()

        page.route("**/*", offline)


@pytest.fixture
def watched_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watcher = PageWatcher(page)
    yield page, watcher
    context.close()


@pytest.fixture(scope="session")
def site_server():
    site = ROOT / "_site"
    if not (site / "index.html").exists():
        pytest.fail("the site is not built: run `make site` first")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
