"""The spool writer against a real InfluxDB 1.x: batches, rejections, outages, restarts, bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kerbside.collector.effects import Effects
from kerbside.collector.store import Work
from kerbside.collector.store.sqlite import SqliteStore
from kerbside.collector.timeseries import InfluxV1Sink, Spool, SpoolWriter, TimeSeriesSink
from kerbside.collector.timeseries import lines as lp
from kerbside.collector.timeseries import writer as writer_module
from tests.helpers import Influxd, RecordingBackoff, wait_until

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

T0 = 1_795_680_000_000


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influxd").start()
    server.query("CREATE DATABASE k")
    yield server
    server.stop()


def gateway_lines(n: int, start: int = 0) -> list[str]:
    return [lp.gateway_line(f"gw-{i % 7}", True, i, T0 + i * 1000) for i in range(start, start + n)]


def count(influx: Influxd, measurement: str = "gateway", field: str = "outbox_depth") -> int:
    result = influx.query(f'SELECT count("{field}") FROM "{measurement}"', db="k")[0]
    if "series" not in result:
        return 0
    return int(result["series"][0]["values"][0][1])


def writer_for(influx: Influxd, spool: Path, **kw: float) -> SpoolWriter:
    options: dict[str, float] = {"flush_interval_s": 0.05, "min_backoff_s": 0.05}
    options.update(kw)
    return SpoolWriter(
        InfluxV1Sink(influx.url, "k", timeout_s=5),
        str(spool),
        batch_size=int(options.pop("batch_size", 500)),
        max_lines=int(options.pop("max_lines", 1_000_000)),
        flush_interval_s=options["flush_interval_s"],
        min_backoff_s=options["min_backoff_s"],
        max_backoff_s=0.3,
    )


def test_every_line_arrives_in_batches(influx: Influxd, tmp_path: Path) -> None:
    writer = writer_for(influx, tmp_path / "store.db")
    writer.start()
    for chunk in range(10):
        writer.submit(gateway_lines(430, chunk * 430))
    assert writer.wait_drained(30)
    writer.close()
    assert count(influx) == 4300
    stats = writer.stats()
    assert (stats.points_written, stats.points_rejected, stats.write_errors) == (4300, 0, 0)
    assert stats.spool_depth == 0


def test_rejected_points_do_not_block_the_ones_behind(influx: Influxd, tmp_path: Path) -> None:
    # An integer field written first fixes the type; the float one conflicts (HTTP 400,
    # "partial write"), and a line that does not parse at all is also a 400.
    InfluxV1Sink(influx.url, "k").write([lp.gateway_line("gw-x", True, 1, T0 - 1000)])
    bad_type = "gateway,gateway_id=gw-y online=1i,outbox_depth=2.5 1795679999000"
    garbage = "this is not line protocol"
    good = gateway_lines(1000)
    batch = [*good[:300], bad_type, *good[300:700], garbage, *good[700:]]
    writer = writer_for(influx, tmp_path / "store.db", batch_size=5000)
    writer.start()
    writer.submit(batch)
    assert writer.wait_drained(30)
    writer.close()
    assert count(influx) == 1000 + 1
    stats = writer.stats()
    assert stats.points_rejected == 2
    assert stats.spool_depth == 0


def test_outage_spools_then_drains_everything_once(influx: Influxd, tmp_path: Path) -> None:
    writer = writer_for(influx, tmp_path / "store.db", batch_size=200)
    writer.start()
    writer.submit(gateway_lines(500))
    assert writer.wait_drained(30)
    backoff = writer.backoff = RecordingBackoff(0.05, 0.3)
    influx.stop()
    writer.submit(gateway_lines(1500, 500))
    writer.flush_soon()
    # While InfluxDB is away the lines wait in the spool and the writer says it is cut off,
    # trying again after each of its backoff's delays.
    wait_until(lambda: backoff.failures >= 4, what="failed writes")
    assert [d for _, d in backoff.given[:4]] == [0.05, 0.1, 0.2, 0.3]
    assert backoff.spaced([at for at, _ in backoff.given])
    stats = writer.stats()
    assert stats.spool_depth == 1500
    assert not stats.connected
    assert stats.write_errors >= 1
    influx.start()
    writer.submit(gateway_lines(500, 2000))
    assert writer.wait_drained(30)
    writer.close()
    assert count(influx) == 2500
    assert writer.stats().connected
    assert backoff.failures == 0


def test_spool_survives_a_restart_of_the_collector(influx: Influxd, tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    influx.stop()
    first = writer_for(influx, store, close_drain_s=0.2)
    first.start()
    first.submit(gateway_lines(1234))
    first.close()  # InfluxDB down: the lines stay in the spool table
    assert Spool(store).depth == 1234
    influx.start()
    second = writer_for(influx, store)
    second.start()
    assert second.wait_drained(30)
    second.close()
    assert count(influx) == 1234
    assert Spool(store).depth == 0


def test_spool_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_lines=1000, block=100)
    assert spool.append([f"m x={i}i {i}" for i in range(700)]) == 0
    assert spool.append([f"m x={i}i {i}" for i in range(700, 1500)]) == 500
    assert spool.depth == 1000
    assert spool.dropped == 500
    last_id, head = spool.head(250)  # whole blocks, up to the limit
    assert head == [f"m x={i}i {i}" for i in range(500, 700)]
    spool.remove_through(last_id)
    assert spool.depth == 800
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.depth == 800
    assert again.head(1)[1][:2] == ["m x=700i 700", "m x=701i 701"]  # at least one block


class StuckSink(TimeSeriesSink):
    """A sink whose write hangs until released: InfluxDB accepting the connection, then silent."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lines: list[str] = []

    @property
    def target(self) -> str:
        return "stuck"

    def write(self, lines: Sequence[str]) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.lines.extend(lines)


def test_submit_never_waits_for_a_hanging_influxdb(tmp_path: Path) -> None:
    sink = StuckSink()
    writer = SpoolWriter(sink, str(tmp_path / "store.db"), batch_size=100, flush_interval_s=0.01)
    writer.start()
    writer.submit(gateway_lines(100))
    assert sink.entered.wait(10)
    # The writer thread is stuck inside write(); submitting from here must still return at once
    # (if it waited for the thread this test would hang until the 30 s release timeout fails it).
    for chunk in range(50):
        writer.submit(gateway_lines(100, 100 + chunk * 100))
    assert writer.stats().spool_depth == 5100
    sink.release.set()
    assert writer.wait_drained(30)
    writer.close()
    assert len(sink.lines) == 5100
    assert sink.lines == gateway_lines(5100)  # in order, each once


class FlakySink(TimeSeriesSink):
    """Raises something no sink should (a bug), then works."""

    def __init__(self) -> None:
        self.calls = 0
        self.lines: list[str] = []

    @property
    def target(self) -> str:
        return "flaky"

    def write(self, lines: Sequence[str]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("surprise")
        self.lines.extend(lines)


def test_an_unexpected_error_does_not_end_the_writer(tmp_path: Path) -> None:
    sink = FlakySink()
    writer = SpoolWriter(
        sink, str(tmp_path / "s.db"), flush_interval_s=0.01, min_backoff_s=0.01, max_backoff_s=0.05
    )
    writer.start()
    writer.submit(gateway_lines(10))
    assert writer.wait_drained(10)
    writer.close()
    assert sink.lines == gateway_lines(10)
    assert writer.stats().write_errors == 1


def store_writer(sink: TimeSeriesSink, store: SqliteStore, flush_interval_s: float) -> SpoolWriter:
    """A writer of the spool the store's commits append to, as the collector wires it."""
    return SpoolWriter(
        sink,
        "",
        batch_size=500,
        flush_interval_s=flush_interval_s,
        open_spool=lambda: store.open_spool(1_000_000, 500),
    )


def test_lines_a_store_commit_spooled_are_sent_once_the_writer_is_told(
    influx: Influxd, tmp_path: Path
) -> None:
    """The collector's path: the store's commit writes the lines with its batch; the writer,
    told how many, sends them within its flush interval. Lines committed while the writer was
    down (a crash) go at its next start."""
    store = SqliteStore(tmp_path / "store.db")
    store.commit(Work(Effects(), lines=gateway_lines(300)))  # before the writer: a crash
    writer = store_writer(InfluxV1Sink(influx.url, "k", timeout_s=5), store, 0.05)
    writer.start()
    assert writer.wait_drained(30)
    assert count(influx) == 300
    for chunk in range(1, 4):
        store.commit(Work(Effects(), lines=gateway_lines(200, chunk * 200 + 100)))
        writer.spooled(200)
    assert writer.wait_drained(30)
    writer.close()
    store.close()
    assert count(influx) == 900
    assert writer.stats().points_written == 900


def test_a_burst_after_a_quiet_spell_goes_at_its_end_not_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between bursts the thread only looks at the spool now and then (MAX_WAIT_S apart, made a
    minute here); the first line of a burst wakes it, so the burst's lines go once no line has
    come for the flush interval, not at the next look."""
    monkeypatch.setattr(writer_module, "MAX_WAIT_S", 60.0)
    store = SqliteStore(tmp_path / "store.db")
    sink = StuckSink()
    sink.release.set()  # it writes at once, and says when it was first called
    writer = store_writer(sink, store, 0.02)
    writer.start()
    time.sleep(0.2)  # the thread has looked at the empty spool: its next look is a minute away
    store.commit(Work(Effects(), lines=gateway_lines(50)))
    writer.spooled(50)
    assert sink.entered.wait(30), "the burst waited for the writer's next look at the spool"
    writer.close()
    store.close()
    assert sink.lines == gateway_lines(50)
