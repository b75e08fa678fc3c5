"""The recorder: the collector's calls become points; zone_occupancy at every interval boundary."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from kerbside.collector.timeseries import BayTags, SpoolWriter, TimeSeriesRecorder, TimeSeriesSink
from kerbside.collector.timeseries.occupancy import BayStates

BAYS = {
    "B1": BayTags("B1", "Z1", "High St", "paid"),
    "B2": BayTags("B2", "Z1", "High St", "limited"),
    "B3": BayTags("B3", "Z2", "Low St", "free"),
}


class MemorySink(TimeSeriesSink):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    @property
    def target(self) -> str:
        return "memory"

    def write(self, lines: Sequence[str]) -> None:
        with self.lock:
            self.lines.extend(lines)


def test_calls_become_points_and_zone_occupancy_ticks(tmp_path: Path) -> None:
    sink = MemorySink()
    writer = SpoolWriter(sink, str(tmp_path / "store.db"), flush_interval_s=0.02)
    interval = 200
    recorder = TimeSeriesRecorder(
        writer,
        zones=lambda: {b.id: b.zone_id for b in BAYS.values()},
        current=lambda: {"B1": ("occupied", 0), "B2": ("vacant", 0)},  # from the store at start
        delay_s=0.05,
        interval_ms=interval,
    )

    switched: list[int] = []

    async def scenario() -> None:
        await recorder.start()
        recorder.bay_state(BAYS["B1"], "occupied", 1_000, "gw-1")  # long ago: history
        recorder.session_closed(BAYS["B2"], 1_000, 61_000, 0.0, 0)
        recorder.alert({"alert_id": "a", "kind": "unpaid", "status": "open", "raised_at": 5_000})
        recorder.alert(
            {"alert_id": "a", "kind": "unpaid", "status": "acknowledged", "raised_at": 5_000}
        )
        recorder.sensor_health("S1", "B1", "gw-1", 7_000, 3500, 9.5, 0, None)
        recorder.gateway("gw-1", True, 0, 8_000)
        await asyncio.sleep(interval * 4.5 / 1000)  # zone occupancy ticks as time passes
        switched.append(time.time_ns() // 1_000_000)
        recorder.bay_state(BAYS["B2"], "occupied", switched[0], "gw-1")
        await asyncio.sleep(interval * 2.5 / 1000)  # two more ticks
        await recorder.stop()

    asyncio.run(scenario())
    lines = sink.lines
    assert lines[:6] == [
        "bay_state,bay_id=B1,gateway_id=gw-1,kind=paid,street=High\\ St,zone_id=Z1"
        ' occupied=1i,state="occupied" 1000',
        "bay_session,bay_id=B2,kind=limited,street=High\\ St,zone_id=Z1"
        " duration_s=60.0,overstay_s=0.0,alerts=0i 1000",
        'alert,kind=unpaid alert_id="a",open=1i 5000',
        'alert,kind=unpaid alert_id="a",open=1i 5000',
        "sensor_health,bay_id=B1,gateway_id=gw-1,sensor_id=S1"
        " battery_mv=3500i,temp_c=9.5,lost_frames=0i 7000",
        "gateway,gateway_id=gw-1 online=1i,outbox_depth=0i 8000",
    ]
    ticks = [line for line in lines if line.startswith("zone_occupancy")]
    times = sorted({int(line.rsplit(" ", 1)[1]) for line in ticks})
    assert len(times) >= 5
    assert all(t % interval == 0 for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [interval] * (len(times) - 1)
    # Each tick writes every zone; B3 was never heard of, so Z2 is all unknown and has no rate.
    first, last = times[0], times[-1]
    assert f"zone_occupancy,zone_id=Z2 occupied=0i,vacant=0i,unknown=1i,total=1i {first}" in ticks
    assert (
        f"zone_occupancy,zone_id=Z1 occupied=1i,vacant=1i,unknown=0i,total=2i,rate=0.5 {first}"
        in ticks
    )
    # B2 turned occupied at `switched`: minutes before it count it vacant, minutes after occupied.
    for t in times:
        occupied = 2 if t >= switched[0] else 1
        assert any(
            line.startswith(f"zone_occupancy,zone_id=Z1 occupied={occupied}i,")
            and line.endswith(f" {t}")
            for line in ticks
        ), t
    assert last >= switched[0]
    # The point for boundary t is written only once t + delay has passed.
    assert times[-1] + 50 <= time.time() * 1000
    assert writer.stats().spool_depth == 0


def test_bay_states_answer_at_any_instant_after_the_last_boundary() -> None:
    states = BayStates()
    states.seed({"B1": ("vacant", 100), "B2": ("occupied", 500)})
    states.observe("B1", "occupied", 1_000)
    states.observe("B1", "vacant", 3_000)
    states.observe("B1", "unknown", 2_000)  # arrives late, stamped before the vacant
    states.seed({"B1": ("occupied", 9_999)})  # a seed never overrides what was heard
    assert states.at(99) == {}
    assert states.at(100) == {"B1": "vacant"}
    assert states.at(1_999) == {"B1": "occupied", "B2": "occupied"}
    assert states.at(2_500) == {"B1": "unknown", "B2": "occupied"}
    assert states.at(3_000)["B1"] == "vacant"
    states.forget_before(2_500)
    assert states.at(2_500) == {"B1": "unknown", "B2": "occupied"}  # the state in force stays
    assert states.at(1_000) == {"B2": "occupied"}  # older history is gone


def test_live_minutes_never_run_ahead_of_the_clock_nor_before_the_bays(tmp_path: Path) -> None:
    """A fixed clock moved by hand (forwards, stalled, stepped back): every zone_occupancy point
    is for a minute ``t`` with ``t + delay <= now`` at the time it was written, and counts a bay
    only from its origin (Z2's bay joined the site at minute 3 and a half)."""
    minute = 60_000
    t0 = 1_795_680_000_000
    origins = {"B1": t0 - 10 * minute, "B2": t0 - 10 * minute, "B3": t0 + 3 * minute + 30_000}
    sink = MemorySink()
    writer = SpoolWriter(sink, str(tmp_path / "s.db"), flush_interval_s=0.01)
    clock = [t0]
    recorder = TimeSeriesRecorder(
        writer,
        zones=lambda: {b.id: b.zone_id for b in BAYS.values()},
        current=lambda: {"B1": ("occupied", t0 - 5 * minute)},
        origins=lambda: origins,
        delay_s=15,
        clock=lambda: clock[0],
    )
    written_at: dict[int, int] = {}
    writer.start()
    stepped = (t0, t0 + 14_999, t0 + 15_000, t0 + 2 * minute + 20_000, t0 + minute, t0 + 7 * minute)
    for now in stepped:
        clock[0] = now
        recorder.tick(now)
        assert recorder.next_tick_at() > now  # nothing due is left behind
        assert writer.wait_drained(10)
        for line in sink.lines:
            written_at.setdefault(int(line.rsplit(" ", 1)[1]), now)
    writer.close()
    assert sorted(written_at) == [t0 + k * minute for k in range(7)]
    assert all(t + 15_000 <= now for t, now in written_at.items())
    z2 = sorted(int(line.rsplit(" ", 1)[1]) for line in sink.lines if "zone_id=Z2" in line)
    assert z2 == [t0 + k * minute for k in (4, 5, 6)]
    first_z1 = next(line for line in sink.lines if "zone_id=Z1" in line)
    assert first_z1.startswith("zone_occupancy,zone_id=Z1 occupied=1i,vacant=0i,unknown=1i,")
