"""The BLE source on bleak's own ``BleakScanner``, over the simulator's bleak backend (the seam
where a radio would be): passive scanning with an or-pattern, the fallback to active, the
watchdog, and what reaches the detector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bleak.exc import BleakError

from kerbside.core.backoff import Backoff
from kerbside.edge.ble import BleDecoder
from kerbside.edge.config import BleConfig
from kerbside.edge.model import Frame
from kerbside.edge.sources.base import BleAdvert
from kerbside.edge.sources.ble import BleSource, BleSourceError, load_backend, or_pattern
from kerbside.sim.ble_backend import SimScannerBackend
from kerbside.sim.cli import main as sim_main

SIM_BACKEND = "kerbside.sim.ble_backend.SimScannerBackend"


class PassiveRefusingBackend(SimScannerBackend):
    """The simulator's backend, on a BlueZ that has no advertisement monitor (no
    ``--experimental``): passive scans fail to start, as they do there."""

    starts: list[str] = []  # noqa: RUF012 - shared by the instances of one test

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode = args[2] if len(args) > 2 else kwargs.get("scanning_mode", "active")

    async def start(self) -> None:
        PassiveRefusingBackend.starts.append(self.mode)
        if self.mode == "passive":
            raise BleakError("org.bluez.AdvertisementMonitorManager1 not available")
        await super().start()


@pytest.fixture(scope="module")
def ble_street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ble") / "street"
    args = ["capture", "--quiet", "--ble", "--scenario", "noisy", "--seed", "5"]
    assert sim_main([*args, "--sensors", "3", "--hours", "0.25", str(out)]) == 0
    return out


def ble_records(street: Path) -> list[dict[str, Any]]:
    lines = (street / "capture.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["src"] == "ble"]


def config(feed_backend: str = SIM_BACKEND, **extra: Any) -> BleConfig:
    return BleConfig(enabled=True, adapter="hci1", backend=feed_backend, **extra)


async def run_until(
    source: BleSource, done: Callable[[list[BleAdvert]], bool], within_s: float
) -> list[BleAdvert]:
    got: list[BleAdvert] = []
    arrived = asyncio.Event()

    def emit(item: object) -> None:
        assert isinstance(item, BleAdvert)
        got.append(item)
        arrived.set()

    task = asyncio.create_task(source.run(emit), name="ble-source")
    try:
        async with asyncio.timeout(within_s):
            while not done(got):
                await arrived.wait()
                arrived.clear()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return got


def clock() -> int:
    return 1_795_000_000_000


def test_passive_scan_delivers_every_advert_as_heard(
    ble_street: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = ble_records(ble_street)
    monkeypatch.setenv("KERBSIDE_SIM_BLE_FEED", f"capture:{ble_street}/capture.jsonl?speed=0")
    source = BleSource(config(), clock)
    got = asyncio.run(run_until(source, lambda g: len(g) >= len(records), 20))
    assert source.passive
    assert [(a.address, a.rssi, {str(k): v.hex() for k, v in a.mfr.items()}) for a in got] == [
        (r["address"], r["rssi"], r["mfr"]) for r in records
    ]
    assert all(a.src == "ble" and a.t == clock() for a in got)
    decoder = source.decoder()
    frames = [f for a in got for f in decoder.decode(a) if isinstance(f, Frame)]
    assert {f.sensor_id for f in frames} == {"BLE-51A00001", "BLE-51A00002", "BLE-51A00003"}
    seqs = [(f.sensor_id, f.seq) for f in frames]
    assert len(seqs) > len(set(seqs))  # and scanner duplicates: the detector drops them by seq


def test_falls_back_to_active_scanning_where_passive_is_refused(
    ble_street: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERBSIDE_SIM_BLE_FEED", f"capture:{ble_street}/capture.jsonl?speed=0&x=1")
    PassiveRefusingBackend.starts = []
    backend = f"{__name__}.PassiveRefusingBackend"
    source = BleSource(config(backend), clock)
    got = asyncio.run(run_until(source, lambda g: len(g) >= 20, 20))
    assert len(got) >= 20
    assert not source.passive
    assert PassiveRefusingBackend.starts[:2] == ["passive", "active"]


def test_watchdog_restarts_a_scan_that_went_deaf(
    ble_street: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first scan session hears adverts for 0.4 s, then nothing until stopped and started.
    feed = f"capture:{ble_street}/capture.jsonl?speed=100&stall_after=0.4"
    monkeypatch.setenv("KERBSIDE_SIM_BLE_FEED", feed)
    source = BleSource(config(), clock, watchdog_s=0.3, backoff=Backoff(0.05, 0.1))
    heard_before: list[int] = []

    def after_restart(got: list[BleAdvert]) -> bool:
        if source.restarts and not heard_before:
            heard_before.append(len(got))
        return bool(heard_before) and len(got) >= heard_before[0] + 3

    got = asyncio.run(run_until(source, after_restart, 20))
    assert source.restarts >= 1
    assert heard_before[0] > 0
    assert len(got) >= heard_before[0] + 3


def test_or_pattern_matches_our_company_id() -> None:
    start, ad_type, content = or_pattern(0x0590)
    assert (start, int(ad_type), content) == (0, 0xFF, b"\x90\x05")


def test_passive_scan_lets_other_versions_and_lengths_through_to_be_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = "01" + "01000000" + "0700" + "00" + "7800d4fe7c01" + "ac0d" + "0c"
    payloads = [good, "02" + good[2:], good[:-2], good + "00", "0102"]
    capture = tmp_path / "capture.jsonl"
    records = [
        {"t": "2026-11-26T08:00:00.000Z", "src": "ble", "address": "C0:FF:EE:00:00:01",
         "rssi": -70, "mfr": {"65535": payload}}
        for payload in payloads
    ]  # fmt: skip
    capture.write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setenv("KERBSIDE_SIM_BLE_FEED", f"capture:{capture}?speed=0")
    source = BleSource(config(), clock)
    got = asyncio.run(run_until(source, lambda g: len(g) >= len(payloads), 20))
    assert source.passive
    decoder = source.decoder()
    frames = [f for a in got for f in decoder.decode(a) if isinstance(f, Frame)]
    assert [f.sensor_id for f in frames] == ["BLE-00000001"]
    assert (decoder.adverts, decoder.bad_frames) == (5, 4)


def test_backend_from_config_must_be_a_bleak_scanner_backend() -> None:
    assert load_backend(None) is None
    assert load_backend(SIM_BACKEND) is SimScannerBackend
    with pytest.raises(BleSourceError, match="cannot import"):
        load_backend("kerbside.nowhere.Backend")
    with pytest.raises(BleSourceError, match="not a bleak scanner backend"):
        load_backend("kerbside.edge.ble.BleDecoder")


def test_decoder_counts_for_health() -> None:
    decoder = BleSource(config(), clock).decoder()
    assert isinstance(decoder, BleDecoder)
    assert decoder.company_id == 0xFFFF
