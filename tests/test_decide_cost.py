"""tools/decide_cost.py: the collector's unit of work fed a backlog in-process, every event
decided, committed and acknowledged."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from kerbside.collector import cycle

TOOL = Path(__file__).resolve().parents[1] / "tools/decide_cost.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("decide_cost", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_decides_and_commits_every_event_and_says_what_it_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    every_s = cycle.SNAPSHOT_EVERY_S
    assert _tool().main(["--events", "2000"]) == 0
    out = capsys.readouterr().out
    # it raises if fewer than all 2,000 were acknowledged (committed)
    assert re.fullmatch(
        r"2000 events: CPU \d+\.\d us an event \(event loop \d+\.\d\), [\d,]+ events/s\n", out
    )
    assert every_s == cycle.SNAPSHOT_EVERY_S  # put back for the rest of the process


def test_too_few_events_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _tool().main(["--events", "10"])
    assert exited.value.code == 2
    assert "--events: between 2,000 and 10,000,000" in capsys.readouterr().err


def test_every_slice_says_what_it_cost_and_what_it_wrote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _tool().main(["--events", "8000", "--every", "4000"]) == 0
    captured = capsys.readouterr()
    slices = captured.err.splitlines()
    assert [line.split(" events:")[0] for line in slices] == ["4,000", "8,000"]
    pattern = (
        r"[\d,]+ events: CPU (\d+\.\d) us an event \(event loop \d+\.\d\),"
        r" ([\d,]+) bytes written an event, store ([\d,]+) MiB"
    )
    figures = [re.fullmatch(pattern, line) for line in slices]
    assert all(figures), slices
    whole = re.match(r"8000 events: CPU (\d+\.\d) us an event", captured.out)
    assert whole is not None
    # a slice's cost is per event of the slice (two batches): the two slices' mean is the
    # whole run's, but for the last commit, which the run waits for after the last slice
    per_slice = [float(found.group(1)) for found in figures if found is not None]
    assert 0.75 < sum(per_slice) / 2 / float(whole.group(1)) < 1.1
    last = figures[-1]
    assert last is not None
    # the store is on a file: by the last slice, commits have written to it
    assert int(last.group(2).replace(",", "")) > 0


def test_every_is_not_for_the_instruction_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _tool().main(["--every", "2000", "--instructions"])
    assert exited.value.code == 2
    assert (
        "--every: a number of events >= 1, and not with --instructions" in capsys.readouterr().err
    )
