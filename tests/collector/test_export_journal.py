"""``export-journal`` replays to the alerts the collector raised live, whatever providers did
to their rights meanwhile."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kerbside.collector.cli import main
from kerbside.collector.queries import export_journal
from kerbside.collector.replay import replay_lines
from kerbside.core.instants import format_instant
from kerbside.core.site import load_site
from tests.collector.test_cycle import MIN, T0, Clock, make, msg
from tests.helpers import occupancy_event as event


def _right(right_id: str, start: int, end: int) -> dict[str, Any]:
    return {
        "type": "right",
        "right_id": right_id,
        "kind": "payment",
        "bay_id": "B001",
        "start": format_instant(start),
        "end": format_instant(end),
    }


def _live_and_replayed(tmp_path: Path, steps: list[tuple[int, Any]], until: int) -> Any:
    """Each step at its wall-clock time, then the alerts as the collector holds them at
    ``until`` and as ``replay`` of its exported journal prints them."""
    clock = Clock(T0)
    service, _link = make(tmp_path, clock)
    for wall, step in steps:
        clock.now = wall
        service.cycle.tick()
        step(service)
    clock.now = until + 1000  # alert_delay_s is 1 s
    service.cycle.tick()
    live, _ = service.queries.alerts(limit=1000)
    lines = [json.dumps(r) for r in export_journal(service.store)]
    site = load_site(tmp_path / "site.yaml")
    replayed, errors = replay_lines(lines, site, until)
    assert not errors
    key = ("kind", "bay_id", "raised_at", "status", "cleared_at", "clear_reason")
    return (
        sorted(tuple(a[k] for k in key) for a in live),
        sorted(tuple(a[k] for k in key) for a in replayed),
    )


def _arrive(service: Any) -> None:
    service.cycle.ingest([msg("events", event(1, "B001", "occupied", T0))])


def _post(right_id: str, start: int, end: int) -> Any:
    def step(service: Any) -> None:
        asyncio.run(service.commands.post_right(_right(right_id, start, end), "prov"))

    return step


def _cancel(right_id: str) -> Any:
    def step(service: Any) -> None:
        asyncio.run(service.commands.delete_right(right_id, "prov"))

    return step


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0 + 30 * MIN, T0 + 60 * MIN)),
                (T0 + 40_000, _cancel("r1")),
            ],
            id="cancelled before it starts",
        ),
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0, T0 + 60 * MIN)),
                (T0 + 20 * MIN, _cancel("r1")),
            ],
            id="cancelled while it covers",
        ),
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0, T0 + 10 * MIN)),
                (T0 + 40_000, _post("r1", T0 + 30 * MIN, T0 + 60 * MIN)),
                (T0 + 5 * MIN, _cancel("r1")),
            ],
            id="a later version cancelled before it starts, the first cut",
        ),
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0 + 30 * MIN, T0 + 60 * MIN)),
                (T0 + 40_000, _cancel("r1")),
                (T0 + 50_000, _post("r1", T0 + 40 * MIN, T0 + 50 * MIN)),
            ],
            id="posted again after its cancellation",
        ),
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0, T0 + 20 * MIN)),
                (T0 + 10 * MIN, _post("r1", T0 - 5 * MIN, T0 + 40 * MIN)),
            ],
            id="replaced by a version that starts earlier",
        ),
        pytest.param(
            [
                (T0 + 20_000, _arrive),
                (T0 + 30_000, _post("r1", T0, T0 + 20 * MIN)),
                (T0 + 10 * MIN, _post("r1", T0 - 5 * MIN, T0 + 40 * MIN)),
                (T0 + 30 * MIN, _cancel("r1")),
            ],
            id="replaced by a version that starts earlier, then cancelled",
        ),
    ],
)
def test_replay_of_the_export_equals_live_after_cancellations(
    tmp_path: Path, steps: list[tuple[int, Any]]
) -> None:
    live, replayed = _live_and_replayed(tmp_path, steps, T0 + 90 * MIN)
    assert live == replayed


# -- the command ------------------------------------------------------------------------------


def store_with_events(tmp_path: Path, events: int) -> Path:
    """A collector's config, its store holding ``events`` occupancy events."""
    service, _link = make(tmp_path, Clock(T0))
    for n in range(1, events + 1):
        state = "occupied" if n % 2 else "vacant"
        service.cycle.ingest([msg("events", event(n, "B001", state, T0 + n * 1000))])
    service.store.close()
    return tmp_path / "collector.yaml"


def test_a_store_that_does_not_exist_is_refused_not_exported_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opening it would have created an empty store, and printed an empty journal."""
    config = store_with_events(tmp_path, 1)
    (tmp_path / "collector.db").rename(tmp_path / "elsewhere.db")
    assert main(["export-journal", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"kerbside-collector: store.path: {tmp_path / 'collector.db'} does not exist\n"
    assert not (tmp_path / "collector.db").exists()


def test_help_has_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export-journal", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:\n  0  done\n" in out
    assert "  1  stdout cannot be written (a full disk)" in out
    assert "a store file that does not\n     exist" in out
