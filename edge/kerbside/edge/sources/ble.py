"""BLE bay sensors as a source: bleak's ``BleakScanner`` with a detection callback.

Scanning is passive where BlueZ allows it (an advertisement monitor with an or-pattern on our
company id, little-endian, in the manufacturer data), which spares the sensors' batteries the scan
requests and the gateway the foreign adverts; where passive scanning is not
available (BlueZ without ``--experimental``, other platforms) it falls back to active scanning,
once, and stays there. The adapter comes from the config (``ble.adapter``), and ``ble.backend``
may name another bleak backend class by dotted path (the simulator's, in tests), so the agent runs
bleak's own scanner code either way.

A watchdog restarts a scan that has delivered nothing for ``watchdog_s``: BlueZ scans are known
to go deaf (a controller reset, another program stopping discovery) without any error. Sensors
advertise at least once a minute, so a minute of silence from all of them means the scan, not the
street. Restarts back off with jitter.

Every advert is passed on as received, duplicates included, so that a capture holds what the
radio heard and replay sees the same: the detector drops a repeated advert, even one reported
after the sensor's next, and counts it per sensor for health; ``rssi`` rides along to health too.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from kerbside.core.backoff import Backoff
from kerbside.core.instants import Instant
from kerbside.edge.ble import BleDecoder
from kerbside.edge.config import BleConfig
from kerbside.edge.sources.base import BleAdvert, Emit, Source

log = logging.getLogger(__name__)

_AD_MANUFACTURER = 0xFF  # AD type of manufacturer-specific data


class BleSourceError(Exception):
    """A BLE configuration that cannot work (a backend path that does not import)."""


def load_backend(dotted: str | None) -> type[BaseBleakScanner] | None:
    """The bleak backend class a config names (``package.module.Class``), or None for bleak's
    own platform backend."""
    if not dotted:
        return None
    module_name, _, class_name = dotted.rpartition(".")
    try:
        backend = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BleSourceError(f"ble.backend: cannot import {dotted!r}: {exc}") from exc
    if not (isinstance(backend, type) and issubclass(backend, BaseBleakScanner)):
        raise BleSourceError(f"ble.backend: {dotted!r} is not a bleak scanner backend")
    return backend


def or_pattern(company_id: int) -> tuple[int, Any, bytes]:
    """BlueZ advertisement-monitor pattern: manufacturer data starting with our company id (BlueZ
    matches AD data, where the company id comes first, little-endian). Not the format version
    too: adverts of other versions must reach the decoder, which counts them for health."""
    from bleak.assigned_numbers import AdvertisementDataType  # noqa: PLC0415 - BlueZ only

    content = company_id.to_bytes(2, "little")
    return (0, AdvertisementDataType(_AD_MANUFACTURER), content)


class BleSource(Source):
    """Delivers BLE adverts as ``BleAdvert(src="ble")`` until cancelled; see the module doc."""

    src = "ble"

    def __init__(
        self,
        config: BleConfig,
        clock: Callable[[], Instant],
        *,
        watchdog_s: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._backend = load_backend(config.backend)
        self.watchdog_s = watchdog_s if watchdog_s is not None else config.watchdog_s
        self.backoff = backoff or Backoff(first_s=1.0, cap_s=60.0)
        self._passive = True  # until BlueZ says it cannot
        self._connected = False
        self._last_advert = time.monotonic()
        self.adverts = 0  # delivered by the scanner
        self.restarts = 0  # scans restarted by the watchdog or after an error

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def passive(self) -> bool:
        return self._passive

    def decoder(self) -> BleDecoder:
        return BleDecoder(self.config.company_id)

    def _scanner(self, emit: Emit) -> BleakScanner:
        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            self._last_advert = time.monotonic()
            self.adverts += 1
            if self.config.company_id not in adv.manufacturer_data:
                return  # active scanning hears every device around
            advert = BleAdvert(
                self.src, self._clock(), device.address, adv.rssi, dict(adv.manufacturer_data)
            )
            try:
                emit(advert)
            except Exception:  # a bug downstream must not stop the radio
                log.exception("ble: error handling an advert from %s", device.address)

        bluez: dict[str, Any] = {"adapter": self.config.adapter}
        if self._passive:
            bluez["or_patterns"] = [or_pattern(self.config.company_id)]
        mode = "passive" if self._passive else "active"
        return BleakScanner(detected, None, mode, bluez=bluez, backend=self._backend)  # type: ignore[arg-type]

    async def run(self, emit: Emit) -> None:
        while True:
            try:
                scanner = self._scanner(emit)
                await scanner.start()
            except Exception as exc:  # noqa: BLE001 - a radio stack fails in many ways; we go on
                if self._passive:
                    log.warning("ble: passive scanning unavailable (%s); scanning actively", exc)
                    self._passive = False
                    continue
                await self._pause(f"cannot start a scan on {self.config.adapter}: {exc}")
                continue
            self._connected = True
            self._last_advert = time.monotonic()
            log.info(
                "ble: scanning %s on %s",
                "passively" if self._passive else "actively",
                self.config.adapter,
            )
            heard = self.adverts
            try:
                await self._watch()
            finally:
                self._connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(scanner.stop(), timeout=10)
            if self.adverts > heard:
                self.backoff.reset()  # it worked for a while: this is a new failure
            await self._pause(f"no advert for {self.watchdog_s:g} s: restarting the scan")

    async def _watch(self) -> None:
        """Return when the scan has gone quiet for ``watchdog_s``."""
        while True:
            quiet = time.monotonic() - self._last_advert
            if quiet >= self.watchdog_s:
                return
            await asyncio.sleep(max(0.05, min(self.watchdog_s - quiet, self.watchdog_s / 4)))

    async def _pause(self, why: str) -> None:
        self.restarts += 1
        delay = self.backoff.next()
        level = logging.WARNING if self.restarts <= 3 else logging.DEBUG
        log.log(level, "ble: %s; again in %.1fs", why, delay)
        await asyncio.sleep(delay)
