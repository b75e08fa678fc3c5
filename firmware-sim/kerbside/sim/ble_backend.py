"""A bleak scanner backend fed by the simulator instead of a radio.

``BleakScanner(callback, backend=SimScannerBackend)`` (or ``ble.backend:
kerbside.sim.ble_backend.SimScannerBackend`` in an edge config) runs bleak's own scanner code
above this class; each simulated advert becomes a real ``AdvertisementData`` and ``BLEDevice``
through ``create_or_update_device`` and ``call_detection_callbacks``, as the BlueZ backend does.

Where the adverts come from is the environment variable ``KERBSIDE_SIM_BLE_FEED`` (or the
``feed=`` keyword):

- ``capture:/path/capture.jsonl`` plays the BLE records of a capture in real time, as if on the
  air: the first scanner start fixes when the first record is "transmitted", and a scanner that
  is stopped misses what is sent meanwhile. Options: ``?speed=X`` (X times faster; 0 = no pacing,
  each record delivered once across restarts), ``&stall_after=S`` (the first scan session goes
  deaf after S wall seconds, until stopped and started again: a hung BlueZ scan for watchdogs).
- ``socket:/path/ble.sock`` reads the adverts a running ``kerbside-sim serial --ble-socket``
  serves (JSON lines in the capture record shape), reconnecting if it goes away.

Like BlueZ, passive scanning requires ``bluez={"or_patterns": [...]}``; in passive mode only
adverts matching an or-pattern are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError

from kerbside.core.instants import parse_instant

FEED_ENV = "KERBSIDE_SIM_BLE_FEED"
_AD_TYPE_MANUFACTURER = 0xFF
_RECONNECT_S = 0.5


@dataclass
class _Air:
    """What a capture feed transmits, and when: shared by every scanner on the same feed."""

    records: list[dict[str, Any]]
    speed: float
    stall_after: float | None
    wall0: float | None = None
    cursor: int = 0  # speed 0: next record to deliver
    stalled_once: bool = False
    t0_ms: int = 0
    times: list[int] = field(default_factory=list)


_AIRS: dict[str, _Air] = {}


def _parse_feed(feed: str) -> tuple[str, str, dict[str, str]]:
    kind, _, rest = feed.partition(":")
    path, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    if kind not in ("capture", "socket") or not path:
        raise BleakError(
            f"{FEED_ENV}: expected capture:/path/capture.jsonl or socket:/path/ble.sock, "
            f"got {feed!r}"
        )
    return kind, path, options


def _air_for(feed: str, path: str, options: dict[str, str]) -> _Air:
    air = _AIRS.get(feed)
    if air is None:
        records = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("src") == "ble":
                    records.append(record)
        stall = options.get("stall_after")
        air = _Air(
            records=records,
            speed=float(options.get("speed", "1")),
            stall_after=None if stall is None else float(stall),
            times=[parse_instant(r["t"]) for r in records],
        )
        air.t0_ms = air.times[0] if air.times else 0
        _AIRS[feed] = air
    return air


class SimScannerBackend(BaseBleakScanner):
    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        bluez: dict[str, Any] | None = None,
        feed: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._mode = scanning_mode
        self._or_patterns = list((bluez or {}).get("or_patterns") or [])
        if scanning_mode == "passive" and not self._or_patterns:
            raise BleakError("passive scanning mode requires bluez or_patterns")
        spec = feed or os.environ.get(FEED_ENV)
        if not spec:
            raise BleakError(
                f"no simulated BLE feed: set {FEED_ENV} (see kerbside.sim.ble_backend)"
            )
        self._feed = spec
        self._kind, self._path, self._options = _parse_feed(spec)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    async def start(self) -> None:
        self.seen_devices = {}
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-ble-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- delivering ---------------------------------------------------------------------------

    async def _run(self) -> None:
        source = self._capture() if self._kind == "capture" else self._socket()
        async for record in source:
            self._deliver(record)

    def _deliver(self, record: dict[str, Any]) -> None:
        try:
            address = str(record["address"])
            rssi = int(record["rssi"]) if record.get("rssi") is not None else -127
            mfr = {int(k): bytes.fromhex(v) for k, v in dict(record["mfr"]).items()}
        except (KeyError, TypeError, ValueError):
            return  # not an advert a radio could have produced
        if self._mode == "passive" and not self._matches(mfr):
            return
        adv = AdvertisementData(
            local_name=None,
            manufacturer_data=mfr,
            service_data={},
            service_uuids=[],
            tx_power=None,
            rssi=rssi,
            platform_data=(record,),
        )
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(address, address, None, record, adv)
        self.delivered += 1
        self.call_detection_callbacks(device, adv)

    def _matches(self, mfr: dict[int, bytes]) -> bool:
        for start, ad_type, content in self._or_patterns:
            if int(ad_type) != _AD_TYPE_MANUFACTURER:
                continue
            for company, payload in mfr.items():
                data = company.to_bytes(2, "little") + payload
                if data[start : start + len(content)] == bytes(content):
                    return True
        return False

    async def _capture(self) -> AsyncIterator[dict[str, Any]]:
        air = _air_for(self._feed, self._path, self._options)
        started = time.monotonic()
        stalls = air.stall_after is not None and not air.stalled_once
        if stalls:
            air.stalled_once = True
        if air.speed <= 0:
            while air.cursor < len(air.records):
                record = air.records[air.cursor]
                air.cursor += 1
                yield record
                await asyncio.sleep(0)
            return
        if air.wall0 is None:
            air.wall0 = time.monotonic()
        # Join the air where it is now: what was sent while no scanner listened is gone.
        i = 0
        elapsed_ms = (time.monotonic() - air.wall0) * 1000 * air.speed
        while i < len(air.times) and air.times[i] - air.t0_ms < elapsed_ms:
            i += 1
        while i < len(air.records):
            due = air.wall0 + (air.times[i] - air.t0_ms) / 1000 / air.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if (
                stalls
                and air.stall_after is not None
                and time.monotonic() - started > air.stall_after
            ):
                await asyncio.Event().wait()  # deaf until stopped, like a hung scan
            yield air.records[i]
            i += 1

    async def _socket(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._path)
            except OSError:
                await asyncio.sleep(_RECONNECT_S)
                continue
            try:
                while line := await reader.readline():
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        if isinstance(record, dict):
                            yield record
            finally:
                writer.close()
            await asyncio.sleep(_RECONNECT_S)
