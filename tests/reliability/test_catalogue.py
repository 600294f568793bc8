"""The hostile-input catalogue's size, as the README states it: the tests of tests/reliability/ marked
``hostile(entry)`` are collected (in a subprocess: a collection of its own) and counted per entry point; the
README's Reliability section must give the same figures, and the catalogue must hold at least 300 (issue 15)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRIES = {"cli": "CLI", "app": "app", "api": "Python API"}

COUNT = """
import collections, json, sys
import pytest

class Count:
    by = collections.Counter()

    def pytest_collection_modifyitems(self, items):
        for item in items:
            mark = item.get_closest_marker("hostile")
            if mark is not None:
                self.by[mark.args[0]] += 1

count = Count()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]], plugins=[count])
print("HOSTILE " + json.dumps(dict(count.by)))
sys.exit(code)
"""


def collected_counts() -> dict:
    out = subprocess.run([sys.executable, "-c", COUNT, str(REPO / "tests" / "reliability")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("HOSTILE "))
    return json.loads(line[len("HOSTILE "):])


def readme_counts() -> tuple[int, dict]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"(\d+) hostile inputs \(CLI (\d+), app (\d+), Python API (\d+)\)", " ".join(section.split()))
    assert m, "README's Reliability section must state 'N hostile inputs (CLI a, app b, Python API c)'"
    total, cli, app, api = map(int, m.groups())
    return total, {"cli": cli, "app": app, "api": api}


def test_catalogue_holds_300_and_the_readme_states_its_size():
    counts = collected_counts()
    assert set(counts) <= set(ENTRIES), counts
    total = sum(counts.values())
    assert total >= 300, counts
    assert min(counts.values()) >= 50, counts  # every entry point is attacked, not only one
    stated_total, stated = readme_counts()
    assert (stated_total, stated) == (total, {k: counts.get(k, 0) for k in ENTRIES}), (counts, stated)
