"""The fast loop (``pytest -m "not slow"``) stays fast: a test module that starts processes
(a broker, one of our programs, a database or time-series server, a browser) is marked slow."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# What starts a process in a test module: subprocess itself, or the helpers that do.
STARTS = re.compile(
    r"\b(subprocess|Popen|Mosquitto\(|Influxd\(|VictoriaMetrics\(|own_postgres|OwnPostgres"
    r"|sync_playwright|LiveCollector\(|start_collector|run_collector|run_demo)\b"
    r"|\b\w+: (Mosquitto|Influxd|VictoriaMetrics|LiveCollector|Stack)\b"
)
SLOW = re.compile(r"^pytestmark = [^\n]*\bpytest\.mark\.slow\b", re.MULTILINE)


def test_every_module_that_starts_processes_is_marked_slow() -> None:
    modules = [p for p in sorted(TESTS.rglob("test_*.py")) if p != Path(__file__).resolve()]
    assert len(modules) > 50
    unmarked = []
    for path in modules:
        text = path.read_text(encoding="utf-8")
        found = STARTS.search(text)
        if found and not SLOW.search(text):
            unmarked.append(f"{path.relative_to(TESTS.parent)}: {found.group(0)}")
    assert not unmarked, "starts processes but is not marked slow:\n" + "\n".join(unmarked)
