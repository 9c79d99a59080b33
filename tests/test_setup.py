"""The README's first command, `make lab`, really serves the course in JupyterLab."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_the_notebooks():
    port = _free_port()
    opts = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token= --ServerApp.password= --allow-root"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_OPTS={opts}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline, listing, page = time.monotonic() + 90, None, ""
        while time.monotonic() < deadline and listing is None:
            if proc.poll() is not None:
                pytest.fail("make lab exited early:\n" + proc.stdout.read().decode(errors="replace"))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=2) as r:
                    listing = json.load(r)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(1)
        assert listing is not None, "JupyterLab did not answer within 90 s"
        names = {item["name"] for item in listing["content"]}
        assert "00_welcome_and_setup.ipynb" in names, names
        assert "JupyterLab" in page
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
