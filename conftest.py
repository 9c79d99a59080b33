"""Test-run reporting shared by the unit tests and the notebooks (nbval).

After the run, prints how long each notebook and each unit-test file took (all phases of all its
items added up) and merges the same numbers into .test-durations.json (a file keeps the time of the
last run that ran it), from which the README's course map takes its CPU run times.
"""

from __future__ import annotations

import json
import os
import platform
from collections import defaultdict
from pathlib import Path

import pytest

_durations: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _durations[path] += report.duration
    if report.failed:
        _failed.add(path)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _durations:
        return
    write = terminalreporter.write_line
    terminalreporter.section("duration per file (seconds)")
    notebooks = {p: d for p, d in _durations.items() if p.endswith(".ipynb")}
    others = {p: d for p, d in _durations.items() if not p.endswith(".ipynb")}
    for title, group in (("notebooks", notebooks), ("unit tests", others)):
        if not group:
            continue
        write(f"{title}:")
        for path, seconds in sorted(group.items()):
            mark = "  FAILED" if path in _failed else ""
            write(f"  {seconds:7.1f}  {path}{mark}")
        write(f"  {sum(group.values()):7.1f}  total")
    # Merge with the file of earlier runs, so that `make site-test` after `make test` keeps the
    # notebooks' times of `make test` (each file keeps the time of the last run that ran it).
    out = Path(config.rootpath, ".test-durations.json")
    try:
        files = json.loads(out.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    files.update({p: round(d, 1) for p, d in _durations.items()})
    record = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "files": dict(sorted(files.items()))}
    out.write_text(json.dumps(record, indent=1) + "\n")
