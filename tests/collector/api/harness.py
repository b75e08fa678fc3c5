"""The collector behind the API tests: the real core, store (a temp SQLite file), unit of work,
read side, commands and alert feed, with a clock in the test's hand and the broker link and
time-series sink replaced at their seams (``link.Transport``, ``cycle.Sink``) by stand-ins whose
state a test sets. Test controls drive it the way gateways do: occupancy events through the
unit of work, time through ``tick``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kerbside.collector.config import CollectorConfig, StoreConfig
from kerbside.collector.effects import Point
from kerbside.collector.link import LinkEvents, Message
from kerbside.collector.rules import make_alert_id
from kerbside.collector.runtime import Collector, assemble
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.core.instants import Instant, format_instant, parse_instant
from kerbside.core.site import parse_site

T0 = parse_instant("2026-11-26T08:00:00Z")
EPOCH = parse_instant("2025-01-01T00:00:00Z")  # the harness's clock starts here
DELAY_MS = 15_000
OBSERVATION_MS = 5 * 60_000  # the site's default observation: an unpaid alert 5 min after arrival
GATEWAY = "gw-1"
ROOT = "kerbside/v1"


def site_data(
    n_bays: int = 6,
    zones: tuple[str, ...] = ("CA-F", "CA-G"),
    named: tuple[str, ...] = (),
    bays: dict[str, dict[str, Any]] | None = None,
    without: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``n_bays`` paid bays spread over ``zones`` (controlled all the time), plus ``named`` bays
    in the first zone; every bay on gateway ``gw-1``; ``bays`` changes some bays' fields and
    the bays ``without`` are left out."""
    ids = [(zones[i % len(zones)], f"{zones[i % len(zones)]}-B{i:05d}") for i in range(n_bays)]
    ids += [(zones[0], name) for name in named]
    ids = [(zone, bay_id) for zone, bay_id in ids if bay_id not in without]
    return {
        "site": "test",
        "timezone": "Europe/London",
        "zones": [{"id": z, "name": f"Zone {z}", "controlled_hours": "any"} for z in zones],
        "bays": [
            {
                "id": bay_id,
                "zone": zone,
                "street": "Parkway",
                "kind": "paid",
                "location": {"lat": 51.5378 + i * 1e-4, "lon": -0.1452},
                "sensor": f"S-{i:06d}",
                "gateway": GATEWAY,
                **(bays or {}).get(bay_id, {}),
            }
            for i, (zone, bay_id) in enumerate(ids)
        ],
    }


class StubLink:
    """The broker link's seam: never connected to a broker; a test says whether it is up."""

    def __init__(self) -> None:
        self.connected = True
        self.published: list[tuple[str, str | bytes, int, bool]] = []

    def start(self, events: LinkEvents) -> None:
        pass

    def stop(self) -> None:
        pass

    def ack(self, message: Message) -> None:
        pass

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        self.published.append((topic, payload, qos, retain))
        return len(self.published)


class StubSink:
    """The time-series sink's seam: takes points and forgets them; a test says if it is well."""

    def __init__(self) -> None:
        self.well = True
        self.points = 0

    def lines(self, points: Sequence[Point]) -> list[str]:
        return [f"point {i}" for i in range(len(points))]

    def committed(self, points: Sequence[Point], spooled: int) -> None:
        self.points += len(points)

    def bays_seen(self, states: Mapping[str, tuple[str, int]]) -> None:
        pass

    def stats(self) -> Mapping[str, int | bool | str | None]:
        return {  # the shape of timeseries.WriterStats.as_dict()
            "spool_depth": 0,
            "points_written": self.points,
            "points_rejected": 0,
            "points_dropped": 0,
            "write_errors": 0,
            "connected": True,
            "influxdb_up": 1,
            "last_error": None,
        }

    def healthy(self) -> bool:
        return self.well


class Clock:
    def __init__(self, now: Instant) -> None:
        self.now = now

    def __call__(self) -> Instant:
        return self.now

    def at_least(self, instant: Instant) -> None:
        self.now = max(self.now, instant)


class Harness:
    """A collector without a broker, for the API (everything runs on the server's loop)."""

    def __init__(
        self,
        workdir: Path,
        site: dict[str, Any] | None = None,
        *,
        sink: bool = False,
        store_path: Path | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = CollectorConfig(
            site=workdir / "site.yaml",
            store=StoreConfig(path=store_path or workdir / "collector.db"),
            http=None,
            alert_delay_s=DELAY_MS / 1000,
        )
        self.site = parse_site(site or site_data())
        self.store = SqliteStore(config.store.path)
        self.link = StubLink()
        self.sink = StubSink()
        # early: the site's bays came into being then (occupancy counts from there)
        self.clock = Clock(EPOCH)
        self.collector: Collector = assemble(
            config,
            self.site,
            self.store,
            self.link,
            clock=self.clock,
            sink=self.sink if sink else None,
        )
        self._seq = itertools.count(1)

    # -- what gateways would do -----------------------------------------------------------------

    def message(self, payload: bytes | dict[str, Any], kind: str = "events") -> Message:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return Message(f"{ROOT}/gw/{GATEWAY}/{kind}", data, 1, 0, 0, self.clock.now)

    def event(self, bay_id: str, state: str, ts: Instant) -> dict[str, Any]:
        seq = next(self._seq)
        return {
            "v": 1,
            "event_id": f"{GATEWAY}:test:{seq}",
            "gateway_id": GATEWAY,
            "seq": seq,
            "bay_id": bay_id,
            "sensor_id": self.site.bays[bay_id].sensor,
            "state": state,
            "ts": format_instant(ts),
            "confirmed_ts": format_instant(ts + 10_000),
            "reason": None,
        }

    def ingest(self, *messages: Message) -> None:
        self.collector.cycle.ingest(list(messages))

    def set_state(self, bay_id: str, state: str, ts: Instant) -> None:
        """The bay's sensor reports ``state`` from ``ts`` (confirmed 10 s later)."""
        self.clock.at_least(ts + 10_000)
        self.ingest(self.message(self.event(bay_id, state, ts)))

    def next_instant(self) -> Instant:
        """The first instant the rules have not passed yet."""
        return self.clock.now - DELAY_MS + 1

    def raise_alert(
        self, bay_id: str, kind: str = "unpaid", at: Instant | None = None
    ) -> dict[str, Any]:
        """A vehicle arrives at ``bay_id`` (paid, never paid for) one observation before ``at``:
        its ``unpaid`` alert is raised at ``at`` (by default T0, or the first instant the rules
        have not passed). Times only move forward: an ``at`` the rules have passed is an error."""
        assert kind == "unpaid", "the harness raises unpaid alerts"
        if at is None:
            at = max(T0, self.next_instant())
        arrival = at - OBSERVATION_MS
        bay = self.collector.queries.bay(bay_id)
        assert bay is not None
        if bay["state"] == "occupied":  # the last vehicle leaves as the next arrives
            self.set_state(bay_id, "vacant", arrival)
        self.set_state(bay_id, "occupied", arrival)
        self.clock.at_least(at + DELAY_MS)
        self.collector.cycle.tick()
        record = self.collector.store.alert(make_alert_id(bay_id, "unpaid", arrival, arrival))
        assert record is not None, "no alert raised"
        return record

    def reload(self, site: dict[str, Any]) -> None:
        """The site file changed and the collector was told (SIGHUP) at the clock's now."""
        self.site = parse_site(site)
        self.collector.cycle.replace_site(self.site)
        self.collector.cycle.store_bays(self.site)

    # -- what the tests check -------------------------------------------------------------------

    def nothing_written(self) -> None:
        """No right, suspension or officer action has reached the store."""
        assert {e.type for e in self.store.journal()} <= {"occupancy"}
        assert self.store.suspensions() == []
        for record in self.store.alerts(limit=10_000):
            found = self.store.alert_with_history(record["alert_id"])
            assert found is not None
            assert found[1] == []
