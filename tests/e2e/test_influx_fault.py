"""InfluxDB stopped in the middle of a street's stream and started again: every point the
collector produced arrives, each once; the spool took the outage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kerbside.core.instants import format_instant
from tests.e2e.influx_street import (
    ALERT_DELAY_S,
    aux_messages,
    build_street,
    drive,
    gateway_messages,
    merged,
    record_spooled,
)
from tests.helpers import Influxd

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

# One field every point of the measurement carries, to count its points.
COUNT_FIELD = {
    "bay_state": "occupied",
    "zone_occupancy": "total",
    "bay_session": "duration_s",
    "alert": "open",
    "sensor_health": "lost_frames",
    "gateway": "online",
}


def point_key(line: str) -> tuple[str, str, str]:
    """(measurement, series, time): what makes a point one point in InfluxDB."""
    head, _, rest = line.partition(" ")
    return head.split(",", 1)[0], head, rest.rsplit(" ", 1)[1]


def test_influxdb_outage_mid_stream_loses_nothing_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    influx = Influxd(tmp_path / "influxd").start()
    influx.query("CREATE DATABASE kerbside")
    st = build_street(tmp_path, sensors=20, hours=2.5, start="2026-11-26T06:00:00Z", seed=5)
    messages = merged(
        gateway_messages(tmp_path / "sim", st.start, st.end),
        aux_messages(st.start, st.end, st.aux_offline),
    )
    submitted, writers = record_spooled(monkeypatch)
    depth_seen: list[int] = []
    stop_at, start_at = len(messages) // 3, 2 * len(messages) // 3

    def on_message(i: int) -> None:
        depth_seen.append(writers[0].stats().spool_depth)
        if stop_at <= i < start_at and influx.proc is not None:
            influx.stop()
        elif i >= start_at and influx.proc is None:
            influx.start()

    try:
        _, recorder = drive(
            st,
            influx.url,
            "kerbside",
            messages,
            until=st.end + (ALERT_DELAY_S + 1) * 1000,
            on_message=on_message,
        )
        assert influx.proc is not None  # it was restarted
        assert recorder.writer.wait_drained(60)
        recorder.writer.close()
        stats = recorder.writer.stats()

        # The outage was real: writes failed and the spool held the points meanwhile.
        assert stats.write_errors > 0
        assert max(depth_seen) > 500
        # InfluxDB acknowledged every line once: nothing resent after a success, nothing lost.
        assert (stats.points_written, stats.points_rejected, stats.points_dropped) == (
            len(submitted),
            0,
            0,
        )
        # Per measurement, InfluxDB holds exactly the distinct points the collector produced.
        expected = Counter(m for m, _, _ in set(map(point_key, submitted)))
        assert set(expected) == set(COUNT_FIELD)
        period = (
            f"time >= '{format_instant(st.start - 3_600_000)}'"
            f" AND time < '{format_instant(st.end + 3_600_000)}'"
        )
        for measurement, field in COUNT_FIELD.items():
            result = influx.query(
                f'SELECT count("{field}") FROM "{measurement}" WHERE {period} GROUP BY *',
                db="kerbside",
            )[0]
            held = sum(s["values"][0][1] for s in result.get("series", []))
            assert held == expected[measurement], measurement
    finally:
        influx.stop()
