"""BLE: simulated adverts in captures, and the bleak backend under bleak's own BleakScanner."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from kerbside.edge.config import load_edge_config
from kerbside.sim.ble_backend import SimScannerBackend
from kerbside.sim.cli import main
from kerbside.sim.kbs1 import FLAG_BOOT
from tests.helpers import wait_until_async

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


@pytest.fixture(scope="module")
def ble_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ble")
    args = ["capture", "--ble", "--sensors", "30", "--hours", "1", "--seed", "4", "--quiet"]
    assert main([*args, str(out)]) == 0
    return out


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (out / "capture.jsonl").read_text().splitlines()]


def test_ble_capture_has_duplicates_malformed_and_reboots(ble_capture: Path) -> None:
    recs = records(ble_capture)
    assert all(r["src"] == "ble" for r in recs)
    payloads = [bytes.fromhex(r["mfr"]["65535"]) for r in recs]  # type: ignore[index]
    good = [p for p in payloads if len(p) == 17 and p[0] == 1]
    malformed = len(payloads) - len(good)
    assert 0 < malformed < len(payloads) * 0.03
    assert any(len(p) != 17 for p in payloads)
    assert any(len(p) == 17 and p[0] != 1 for p in payloads)
    keys = Counter((p[1:5], p[5:7]) for p in good)
    dupes = sum(n - 1 for n in keys.values() if n > 1)
    assert 0.01 < dupes / len(good) < 0.06  # scanner-reported repeats of one advert
    boots = [struct.unpack("<BIHB", p[:8]) for p in good if p[7] & FLAG_BOOT]
    assert len({serial for _, serial, _, _ in boots}) >= 27  # a BOOT advert may be lost too
    assert all(seq == 0 for _, _, seq, _ in boots)
    config = load_edge_config(ble_capture / "edge.yaml")
    assert config.ble.enabled
    assert config.serial == []
    assert {s.id for s in config.sensors} >= {f"BLE-{serial:08X}" for _, serial, _, _ in boots}
    assert len(config.sensors) == 30


def test_backend_runs_under_bleak_scanner(ble_capture: Path) -> None:
    feed = f"capture:{ble_capture / 'capture.jsonl'}?speed=0"
    seen: list[tuple[BLEDevice, AdvertisementData]] = []

    async def scan() -> str:
        scanner = BleakScanner(
            lambda d, a: seen.append((d, a)), backend=SimScannerBackend, feed=feed
        )
        async with scanner:
            expected = len(records(ble_capture))
            await wait_until_async(lambda: len(seen) >= expected, 2, "every advert of the capture")
        return str(scanner.backend_id)

    assert asyncio.run(scan()) == "SimScannerBackend"
    recs = records(ble_capture)
    assert len(seen) == len(recs)
    for (device, adv), rec in zip(seen, recs, strict=True):
        assert device.address == rec["address"]
        assert adv.rssi == rec["rssi"]
        assert adv.manufacturer_data == {0xFFFF: bytes.fromhex(rec["mfr"]["65535"])}  # type: ignore[index]


def test_passive_needs_or_patterns_and_filters(ble_capture: Path, tmp_path: Path) -> None:
    feed = f"capture:{ble_capture / 'capture.jsonl'}?speed=0"
    with pytest.raises(BleakError):
        BleakScanner(
            lambda d, a: None, scanning_mode="passive", backend=SimScannerBackend, feed=feed
        )
    other = tmp_path / "other.jsonl"
    lines = (ble_capture / "capture.jsonl").read_text().splitlines()[:20]
    foreign = {
        "t": "2026-11-26T08:00:00.500Z",
        "src": "ble",
        "address": "AA:BB:CC:DD:EE:FF",
        "rssi": -50,
        "mfr": {"76": "0215aabbcc"},
    }
    other.write_text("\n".join([*lines, json.dumps(foreign)]) + "\n")
    seen: list[AdvertisementData] = []

    async def scan() -> None:
        pattern = OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\xff\xff\x01")
        scanner = BleakScanner(
            lambda d, a: seen.append(a),
            scanning_mode="passive",
            backend=SimScannerBackend,
            bluez={"or_patterns": [pattern]},
            feed=f"capture:{other}?speed=0",
        )
        async with scanner:
            await wait_until_async(lambda: seen, 2, "adverts through the filter")

    asyncio.run(scan())
    assert seen
    assert all(0xFFFF in a.manufacturer_data for a in seen)
    assert all(a.manufacturer_data[0xFFFF][:1] == b"\x01" for a in seen)


def test_stall_until_restarted(ble_capture: Path) -> None:
    feed = f"capture:{ble_capture / 'capture.jsonl'}?speed=600&stall_after=0.3"
    counts: list[int] = []

    async def scan() -> None:
        seen: list[AdvertisementData] = []
        scanner = BleakScanner(lambda d, a: seen.append(a), backend=SimScannerBackend, feed=feed)
        await scanner.start()
        await asyncio.sleep(0.6)  # past stall_after: the feed has gone deaf by now
        counts.append(len(seen))
        await asyncio.sleep(0.6)  # and stays deaf: a window in which nothing may arrive
        counts.append(len(seen))  # deaf: nothing more
        await scanner.stop()
        await scanner.start()  # what a watchdog does
        await wait_until_async(lambda: len(seen) > counts[1], 2, "adverts after the restart")
        counts.append(len(seen))
        await scanner.stop()

    asyncio.run(scan())
    assert counts[0] > 0
    assert counts[1] == counts[0]
    assert counts[2] > counts[1]


def test_socket_feed_from_live_sim(tmp_path: Path) -> None:
    sock = tmp_path / "ble.sock"
    config_out = tmp_path / "edge.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kerbside.sim.cli",
            "serial",
            "--sensors",
            "2",
            "--ble-sensors",
            "3",
            "--speed",
            "60",
            "--dir",
            str(tmp_path),
            "--ble-socket",
            str(sock),
            "--config-out",
            str(config_out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(tmp_path / "tty0").encode()
        assert proc.stdout.readline().strip() == str(sock).encode()
        config = load_edge_config(config_out)
        assert config.ble.enabled
        assert config.ble.backend == "kerbside.sim.ble_backend.SimScannerBackend"
        ble_ids = {s.id for s in config.sensors if s.id.startswith("BLE-")}
        assert len(ble_ids) == 3
        seen: list[AdvertisementData] = []

        async def scan() -> None:
            scanner = BleakScanner(
                lambda d, a: seen.append(a), backend=SimScannerBackend, feed=f"socket:{sock}"
            )
            async with scanner:
                await wait_until_async(lambda: len(seen) >= 6, 5, "six adverts from the sim")

        asyncio.run(scan())
        assert len(seen) >= 6
        serials = {
            struct.unpack("<I", a.manufacturer_data[0xFFFF][1:5])[0]
            for a in seen
            if len(a.manufacturer_data[0xFFFF]) == 17
        }
        assert {f"BLE-{s:08X}" for s in serials} <= ble_ids
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
