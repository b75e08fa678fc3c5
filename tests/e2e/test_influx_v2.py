"""The v2 write path (``influxdb-client``, ``/api/v2/write``) against a real server that speaks
it: Debian's victoria-metrics. It keeps numeric fields only (as ``<measurement>_<field>``
series), so the numeric fields of a recent street's points are read back and counted."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from kerbside.collector.config import InfluxConfig
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
from tests.helpers import VictoriaMetrics

pytestmark = pytest.mark.slow


def numeric_fields(line: str) -> list[tuple[str, str, float]]:
    """(series name as victoria-metrics names it, tag set, value) of each numeric field."""
    head, fields, stamp = re.split(r"(?<!\\) ", line)  # our strings hold no spaces
    measurement, _, tags = head.partition(",")
    out = []
    for item in re.split(r"(?<!\\),", fields):
        key, _, value = item.partition("=")
        if value.startswith('"'):
            continue  # a string field: victoria-metrics does not keep it as a number
        number = float(value.rstrip("i"))
        out.append((f"{measurement}_{key}", f"{tags}@{stamp}", number))
    return out


def export(vm: VictoriaMetrics, start: int, end: int) -> dict[str, list[tuple[int, float]]]:
    """Every sample of every series in [start, end], per metric name (tags folded)."""
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10).read()
    params = urllib.parse.urlencode(
        {"match[]": '{__name__=~".+"}', "start": start // 1000, "end": end // 1000 + 1}
    )
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{params}", timeout=30) as resp:
        body = resp.read().decode()
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in body.splitlines():
        series = json.loads(line)
        name = series["metric"]["__name__"]
        labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        # A resent point is stored again by victoria-metrics: count distinct instants.
        samples = dict(zip(series["timestamps"], series["values"], strict=True))
        out[name].extend((hash((labels, t)), v) for t, v in samples.items())
    return out


def test_v2_write_path_into_victoria_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = VictoriaMetrics(tmp_path / "vm").start()
    # A recent street (victoria-metrics keeps recent points): the last 90 minutes.
    now_min = time.time_ns() // 1_000_000 // 60_000 * 60_000
    start = format_instant(now_min - 90 * 60_000)
    st = build_street(tmp_path, sensors=12, hours=1.5, start=start, seed=7)
    (tmp_path / "token").write_text("kerbside-test-token\n")
    config = InfluxConfig(
        url=vm.url,
        api="v2",
        token_file=tmp_path / "token",
        org="camden",
        bucket="parking",
        batch_size=300,
        flush_interval_ms=50,
    )
    submitted, _ = record_spooled(monkeypatch)
    try:
        messages = merged(
            gateway_messages(tmp_path / "sim", st.start, st.end),
            aux_messages(st.start, st.end, st.aux_offline),
        )
        _, recorder = drive(
            st, vm.url, "", messages, until=st.end + (ALERT_DELAY_S + 1) * 1000, influx=config
        )
        assert recorder.writer.wait_drained(60)
        recorder.writer.close()
        stats = recorder.writer.stats()
        assert (stats.points_rejected, stats.write_errors) == (0, 0)
        assert stats.points_written == len(submitted)

        expected: dict[str, dict[str, float]] = defaultdict(dict)
        for line in submitted:
            for name, key, value in numeric_fields(line):
                expected[name][key] = value  # the same point twice is one point
        got = export(vm, st.start - 60_000, st.end + 120_000)
        for name in (
            "bay_state_occupied",
            "zone_occupancy_rate",
            "zone_occupancy_total",
            "bay_session_duration_s",
            "bay_session_overstay_s",
            "alert_open",
            "sensor_health_battery_mv",
            "sensor_health_temp_c",
            "gateway_online",
            "gateway_outbox_depth",
        ):
            assert expected[name], name
            assert len(got[name]) == len(expected[name]), name
            assert sum(v for _, v in got[name]) == pytest.approx(sum(expected[name].values())), name
    finally:
        vm.stop()
