"""Sinks' error mapping (rejected vs retryable), config errors, and the minute task's tick."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from kerbside.collector.config import InfluxConfig
from kerbside.collector.timeseries import (
    InfluxV1Sink,
    InfluxV2Sink,
    RejectedWriteError,
    RetryableWriteError,
    SpoolWriter,
    TimeSeriesRecorder,
    TimeSeriesSink,
    open_sink,
)
from kerbside.core.config import ConfigError
from tests.helpers import Influxd, VictoriaMetrics, free_port

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    server.query("CREATE DATABASE k")
    yield server
    server.stop()


def test_v1_errors_are_typed(influx: Influxd) -> None:
    sink = InfluxV1Sink(influx.url, "k")
    with pytest.raises(RejectedWriteError) as rejected:
        sink.write(["not line protocol"])
    assert rejected.value.status == 400
    with pytest.raises(RetryableWriteError, match="404"):  # no such database: wait for it
        InfluxV1Sink(influx.url, "nope").write(["m x=1i 1"])
    with pytest.raises(RetryableWriteError, match=r"Connection refused|URLError"):
        InfluxV1Sink(f"http://127.0.0.1:{free_port()}", "k", timeout_s=2).write(["m x=1i 1"])


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers /api/v2/write with the status InfluxDB 2.x gives for the case at hand (no 2.x
    server runs here; victoria-metrics, which does run, never refuses a line)."""

    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0)
        body = json.dumps({"code": "invalid", "message": "unable to parse 'junk'"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_v2_errors_are_typed(tmp_path: Path) -> None:
    vm = VictoriaMetrics(tmp_path / "vm").start()
    try:
        sink = InfluxV2Sink(vm.url, "token", "org", "bucket")
        sink.write(["m,a=b x=1i 1795680000000"])  # a real /api/v2/write accepts it
        sink.close()
    finally:
        vm.stop()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Answer.statuses[:] = [400, 503, 401]
        sink = InfluxV2Sink(f"http://127.0.0.1:{server.server_address[1]}", "t", "o", "b")
        with pytest.raises(RejectedWriteError) as rejected:
            sink.write(["junk"])
        assert rejected.value.status == 400
        with pytest.raises(RetryableWriteError, match="503"):
            sink.write(["m x=1i 1"])
        with pytest.raises(RetryableWriteError, match="401"):  # a token problem is fixable
            sink.write(["m x=1i 1"])
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
    down = InfluxV2Sink(f"http://127.0.0.1:{free_port()}", "token", "org", "bucket", timeout_s=2)
    with pytest.raises(RetryableWriteError):
        down.write(["m x=1i 1"])
    down.close()


def test_open_sink_reads_secrets_and_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("s3cret\n")
    sink = open_sink(
        InfluxConfig(
            url="http://127.0.0.1:8086",
            api="v1",
            database="k",
            username="u",
            password_file=tmp_path / "pass",
            retention_policy="autogen",
        )
    )
    assert sink.target == "http://127.0.0.1:8086 db=k rp=autogen"  # no secret in logs
    missing = InfluxConfig(
        url="http://127.0.0.1:8086", api="v2", token_file=tmp_path / "absent", org="o", bucket="b"
    )
    with pytest.raises(ConfigError, match=r"^influxdb\.token_file: cannot read"):
        open_sink(missing)


class ListSink(TimeSeriesSink):
    def __init__(self) -> None:
        self.lines: list[str] = []

    @property
    def target(self) -> str:
        return "list"

    def write(self, lines: Sequence[str]) -> None:
        self.lines.extend(lines)


def test_tick_writes_each_minute_once_and_catches_up(tmp_path: Path) -> None:
    sink = ListSink()
    writer = SpoolWriter(sink, str(tmp_path / "s.db"), flush_interval_s=0.01)
    recorder = TimeSeriesRecorder(
        writer,
        zones=lambda: {"B1": "Z", "B2": "Z"},
        current=lambda: {"B1": ("occupied", 0), "B2": ("vacant", 0)},
        delay_s=15,
    )
    minute = 60_000
    t0 = 1_795_680_000_000  # on a minute boundary
    writer.start()
    recorder.tick(t0 + 20_000)  # first call: only finds its first boundary (t0 + 1 min)
    assert recorder.next_tick_at() == t0 + minute + 15_000
    recorder.tick(t0 + minute + 14_999)  # not yet: the delay lets backdated events in
    recorder.tick(t0 + minute + 15_000)
    recorder.tick(t0 + minute + 40_000)  # nothing new
    recorder.tick(t0 + 5 * minute + 15_000)  # a short stall: minutes 2..5 all written
    recorder.tick(t0 + 200 * minute)  # a long one: only the latest minute
    assert writer.wait_drained(10)
    writer.close()
    times = [int(line.rsplit(" ", 1)[1]) for line in sink.lines]
    assert times == [t0 + k * minute for k in (1, 2, 3, 4, 5, 199)]
    assert sink.lines[0].startswith("zone_occupancy,zone_id=Z occupied=1i,vacant=1i,unknown=0i")
