"""JupyterLab in Chromium: notebook 00 opens, renders, runs, and its widget appears."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, SCREENSHOTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server():
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root", "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--notebook-dir={ROOT / 'notebooks'}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/api", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("JupyterLab did not start")
            time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def test_notebook_renders_and_widget_appears(lab_server, watched_page):
    page, watcher = watched_page
    page.goto(f"{lab_server}/lab/tree/00_welcome_and_setup.ipynb", wait_until="load")
    heading = page.locator(".jp-Notebook .jp-RenderedMarkdown h1").first
    heading.wait_for(timeout=90_000)
    assert "Welcome and set-up" in heading.inner_text()
    # wait for the kernel, then run every cell through JupyterLab's own command
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && window.jupyterapp.shell.currentWidget.sessionContext && window.jupyterapp.shell.currentWidget.sessionContext.session && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel", timeout=90_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    widget = page.locator(".jp-OutputArea .widget-dropdown select").first
    widget.wait_for(timeout=150_000)
    widget.scroll_into_view_if_needed()
    assert widget.locator("option").all_inner_texts()[:2] == ["Shakespeare", "IMDB"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "lab_00_widget.png"))
    real = [p for p in watcher.problems if "favicon" not in p]
    assert real == [], "\n".join(real)
