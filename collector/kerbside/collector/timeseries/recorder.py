"""What the collector calls: domain changes in, line protocol into the spool writer.

Every call runs on the collector's event loop. For a batch, tick or command the unit of work
asks ``lines(points)`` before its commit, and the store writes them to the spool in the commit's
own transaction; ``committed`` then tells the writer and keeps the bay-state history. The
single-point calls (``bay_state``...) format a line and append it to the writer's buffer.

``zone_occupancy`` is a task of its own on the loop: at each minute boundary ``t`` it waits
``delay`` (the collector's ``alert_delay_s``: events arrive backdated by the detector's
confirmation time), takes every bay's state at ``t`` from the in-memory history the
``bay_state`` calls keep, and writes one point per zone at ``t``. Backfill computes the same
from the store's state history, so a minute written live and backfilled agree (except where an
event arrived more than ``delay`` late, e.g. a silence, detected 15 minutes after it began). Its
lines go to the store as a commit of their own (``spool``), or, while the store refuses them, to
the writer's buffer.

No point is ever written for a minute that has not passed (``t + delay <= now``), and a bay
counts only from its origin (when the collector first ran with a site holding it): a zone's
points begin when its bays came into being.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kerbside.collector.effects import (
    AlertPoint,
    BayStatePoint,
    GatewayPoint,
    Point,
    SensorPoint,
    SessionPoint,
)
from kerbside.collector.timeseries import lines as lp
from kerbside.collector.timeseries.occupancy import BayStates
from kerbside.collector.timeseries.writer import SpoolWriter
from kerbside.core.instants import Instant

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
MAX_CATCH_UP = 60


def wall_clock_ms() -> Instant:
    return time.time_ns() // 1_000_000


class TimeSeriesRecorder:
    """The collector's time-series sink: non-blocking calls, durable spool, minute task."""

    def __init__(
        self,
        writer: SpoolWriter,
        *,
        zones: Callable[[], Mapping[str, str]],
        current: Callable[[], Mapping[str, tuple[str, Instant]]] = dict,
        origins: Callable[[], Mapping[str, Instant]] | None = None,
        delay_s: float = 15.0,
        clock: Callable[[], Instant] = wall_clock_ms,
        interval_ms: int = MINUTE_MS,
        spool: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.writer = writer
        self._spool = spool
        self._zones = zones
        self._current = current
        self._origins = origins
        self.states = BayStates()
        self._delay_ms = int(delay_s * 1000)
        self._clock = clock
        self._interval = interval_ms
        self._task: asyncio.Task[None] | None = None
        self._next_t: Instant | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.writer.start)
        self._task = asyncio.get_running_loop().create_task(
            self._occupancy_loop(), name="timeseries-zone-occupancy"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.writer.close)

    def stats(self) -> dict[str, int | bool | str | None]:
        return self.writer.stats().as_dict()

    def healthy(self) -> bool:
        """False only when points are being lost (spool unwritable or full); InfluxDB being
        unreachable is reported by ``stats()["connected"]``, not here: the spool covers it."""
        return self.writer.stats().healthy

    # -- the collector's calls ----------------------------------------------------------------

    def lines(self, points: Sequence[Point]) -> list[str]:
        """The line of each point (pure: the store writes them with the points' batch)."""
        out: list[str] = []
        for point in points:
            if isinstance(point, BayStatePoint):
                out.append(lp.bay_state_line(point.bay, point.state, point.ts, point.gateway_id))
            elif isinstance(point, SessionPoint):
                out.append(lp.bay_session_line(*point))
            elif isinstance(point, AlertPoint):
                try:
                    line = lp.alert_line(point.record)
                except ValueError:
                    log.warning("alert record without a usable time, no point: %r", point.record)
                    continue
                if line is not None:
                    out.append(line)
            elif isinstance(point, SensorPoint):
                health = lp.sensor_health_line(*point)
                if health is not None:
                    out.append(health)
            elif isinstance(point, GatewayPoint):
                out.append(lp.gateway_line(*point))
        return out

    def committed(self, points: Sequence[Point], spooled: int) -> None:
        """A commit wrote ``spooled`` lines of ``points`` to the spool: send them; keep the bays'
        states for zone occupancy."""
        observe = self.states.observe
        for point in points:
            if isinstance(point, BayStatePoint):
                observe(point.bay.id, point.state, point.ts)
        self.writer.spooled(spooled)

    def bays_seen(self, states: Mapping[str, tuple[str, Instant]]) -> None:
        """Bays' current (state, since) from the store, for zone occupancy: a zone this
        collector now runs (among several) whose changes another collector wrote."""
        for bay_id, (state, since) in states.items():
            self.states.observe(bay_id, state, since)

    def bay_state(self, bay: lp.BayLike, state: str, ts: Instant, gateway_id: str | None) -> None:
        self.states.observe(bay.id, state, ts)
        self._put(lp.bay_state_line(bay, state, ts, gateway_id))

    def session_closed(
        self, bay: lp.BayLike, start: Instant, end: Instant, overstay_s: float, alerts: int
    ) -> None:
        self._put(lp.bay_session_line(bay, start, end, overstay_s, alerts))

    def alert(self, record: Mapping[str, Any]) -> None:
        try:
            line = lp.alert_line(record)
        except ValueError:
            log.warning("alert record without a usable time, no point: %r", record)
            return
        if line is not None:
            self._put(line)

    def sensor_health(  # noqa: PLR0917 - the call shape agreed with the collector
        self,
        sensor_id: str,
        bay_id: str | None,
        gateway_id: str,
        ts: Instant,
        battery_mv: int | None,
        temp_c: float | None,
        lost_frames: int | None,
        rssi: int | None,
    ) -> None:
        line = lp.sensor_health_line(
            sensor_id, bay_id, gateway_id, ts, battery_mv, temp_c, lost_frames, rssi
        )
        if line is not None:
            self._put(line)

    def gateway(self, gateway_id: str, online: bool, outbox_depth: int | None, ts: Instant) -> None:
        self._put(lp.gateway_line(gateway_id, online, outbox_depth, ts))

    def tick(self, now: Instant) -> None:
        """Write zone_occupancy for every interval boundary ``t`` with ``t + delay <= now`` not
        written yet. The first call only sets the first boundary (the one at or after
        ``now - delay``). After a stall longer than ``MAX_CATCH_UP`` boundaries only the latest
        is written (backfill can rewrite the gap).
        """
        due = now - self._delay_ms
        if self._next_t is None:
            self.states.seed(self._current())
            self._next_t = -(-due // self._interval) * self._interval
        latest = due // self._interval * self._interval
        if latest < self._next_t:
            return
        missed = (latest - self._next_t) // self._interval + 1
        if missed > MAX_CATCH_UP:
            log.warning("zone_occupancy: %d minutes missed (stalled?); writing the latest", missed)
            self._next_t = latest
        while self._next_t <= latest:
            self.zone_occupancy_at(self._next_t)
            self._next_t += self._interval
        self.states.forget_before(latest)

    def next_tick_at(self) -> Instant:
        """When ``tick`` next has something to write (wall-clock instant)."""
        if self._next_t is None:
            return self._clock()
        return self._next_t + self._delay_ms

    def zone_occupancy_at(self, t: Instant) -> int:
        """Write the zone_occupancy points for instant ``t`` now; returns how many."""
        origins = None if self._origins is None else self._origins()
        counts = lp.count_zones(self._zones(), self.states.at(t), origins, t)
        lines = [lp.zone_occupancy_line(z, c, t) for z, c in sorted(counts.items())]
        if self._spool is not None:
            try:
                self._spool(lines)
            except Exception:
                log.exception("zone_occupancy not spooled in the store; held in memory")
            else:
                self.writer.spooled(len(lines))
                return len(counts)
        self.writer.submit(lines)
        return len(counts)

    # -- internals ----------------------------------------------------------------------------

    def _put(self, line: str) -> None:
        self.writer.submit((line,))

    async def _occupancy_loop(self) -> None:
        while True:
            try:
                self.tick(self._clock())
            except Exception:
                log.exception("zone_occupancy failed; trying again at the next boundary")
            wait_ms = self.next_tick_at() - self._clock()
            # Re-read the clock at least every second: sleeps overshoot, clocks step, and a test
            # clock may run faster than the wall.
            await asyncio.sleep(min(max(wait_ms, 5) / 1000, 1.0))
