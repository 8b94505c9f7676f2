"""Repository-wide pytest hooks: count Python tests vs notebook cells, and make sure a test run leaves
the committed notebooks untouched."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).parent
_before: dict = {}
_counts = {"python tests": 0, "notebook cells": 0}


def _notebook_hashes() -> dict:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for d in ("notebooks", "labs")
        for p in sorted((ROOT / d).rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts
    }


def pytest_sessionstart(session):
    _before.update(_notebook_hashes())


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        kind = "notebook cells" if report.nodeid.split("::")[0].endswith(".ipynb") else "python tests"
        _counts[kind] += 1


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"ran {_counts['python tests']} python tests and {_counts['notebook cells']} notebook cells"
    )


def pytest_sessionfinish(session, exitstatus):
    after = _notebook_hashes()
    changed = [str(p.relative_to(ROOT)) for p in set(_before) | set(after) if _before.get(p) != after.get(p)]
    if changed:
        print(f"\nERROR: the test run modified committed notebooks: {sorted(changed)}")
        session.exitstatus = 1
