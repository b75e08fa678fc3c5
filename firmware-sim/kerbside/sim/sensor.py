"""One magnetometer bay sensor: the physics of its field and the firmware that samples it once a
second, sets DETECT against the baseline stored at install, and decides when to send (the
policies of the firmware builds are in ``kerbside.sim.firmware``).

Pure: ``run(until)`` advances the sensor to ``until`` and returns what it sent; no clock, no I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.sim.firmware import FIRMWARES, Firmware
from kerbside.sim.kbs1 import FLAG_BOOT, FLAG_DETECT, FLAG_FAULT, FLAG_LOW_BATT
from kerbside.sim.scenario import Scenario
from kerbside.sim.schedule import SensorPlan
from kerbside.sim.traffic import BayTraffic, random_unit

SAMPLE_MS = 1_000
DETECT_MG = 50.0
MOVE_MG = 20.0
LOW_BATT_MV = 3300
_NEVER = 2**62
_HOUR_MS = 3_600_000
_T_INSTALL_C = 10.0


@dataclass(frozen=True, slots=True)
class SentFrame:
    """A frame the firmware sent (before the line does anything to it)."""

    t: Instant
    sensor: int  # index in the street
    seq: int
    flags: int
    mx: int
    my: int
    mz: int
    battery_mv: int
    temp_dc: int
    silent: bool  # sent while the sensor's link is dead: it never arrives


def ambient_c(t: Instant, amplitude: float) -> float:
    """Daily temperature cycle: coldest at 03:00 UTC, warmest at 15:00 UTC, mean 10 degC."""
    hour = (t % (24 * _HOUR_MS)) / _HOUR_MS
    return _T_INSTALL_C + amplitude * math.sin(2 * math.pi * (hour - 9.0) / 24.0)


def _scaled(v: tuple[float, float, float], k: float) -> tuple[float, float, float]:
    return (v[0] * k, v[1] * k, v[2] * k)


def _clamp16(v: float) -> int:
    return max(-32768, min(32767, round(v)))


def _whole_samples(ms: int) -> int:
    """The longest run of whole samples within ``ms``: a keep-alive due then is never late."""
    return max(SAMPLE_MS, ms // SAMPLE_MS * SAMPLE_MS)


def _last_words(plan: SensorPlan, t: Instant) -> bool:
    """Whether ``t`` is just before the sensor goes quiet (silence, reboot). A passing car then
    would be its last word: no later frame could say it had gone, and no detector could know
    better, so the street keeps such moments free of blips and the truth stays knowable."""
    silent, reboot = plan.silent, plan.reboot
    if silent is not None and silent.start - 60_000 <= t < silent.start:
        return True
    return reboot is not None and reboot.start - 15_000 <= t < reboot.end


class Sensor:
    def __init__(
        self,
        *,
        seed: int,
        index: int,
        sensor_id: str,
        scenario: Scenario,
        start: Instant,
        bay: BayTraffic,
        left: BayTraffic | None,
        right: BayTraffic | None,
        plan_at: Callable[[Instant], tuple[SensorPlan, Instant]],
        firmware: Firmware = FIRMWARES["repeating"],
    ) -> None:
        setup = random.Random(f"{seed}:sensor:{index}")
        self._rng = random.Random(f"{seed}:samples:{index}")
        # The firmware's own timing draws from a stream of its own, so that every build sees
        # the same street (the same field, sample for sample).
        self._fw_rng = random.Random(f"{seed}:firmware:{index}")
        self.firmware = firmware
        spread = round(firmware.keepalive_ms * firmware.keepalive_spread)
        self.keepalive_ms = firmware.keepalive_ms - self._fw_rng.randint(0, spread)
        self._quiet_ms = _whole_samples(self.keepalive_ms)
        self.index = index
        self.sensor_id = sensor_id
        self._scenario = scenario
        self._start = start
        self._bay, self._left, self._right = bay, left, right
        self._plan_at = plan_at
        self.earth = _scaled(random_unit(setup), setup.uniform(450.0, 550.0))
        self._offset = _scaled(random_unit(setup), setup.uniform(*scenario.drift_offset_mg))
        self._drift = _scaled(random_unit(setup), setup.uniform(*scenario.drift_mg_per_h))
        self._temp_coef = _scaled(random_unit(setup), setup.uniform(*scenario.temp_coef_mg_per_c))
        self._temp_bias_c = setup.uniform(-1.5, 1.5)  # sun, shade, tarmac
        self._frac_left = setup.uniform(*scenario.interference)
        self._frac_right = setup.uniform(*scenario.interference)
        weak_battery = setup.random() < 0.05
        self._battery0 = setup.uniform(3150, 3290) if weak_battery else setup.uniform(3350, 3600)
        self.lower_hex = setup.random() < 0.2  # some firmware builds print lowercase hex
        self._next_t = start + setup.randint(0, SAMPLE_MS - 1)
        # A few sensors start just short of the wrap so every run sees seq wrap to 0.
        self._seq = (
            65535 - setup.randint(0, 150) if setup.random() < 0.1 else setup.randint(0, 60000)
        )
        self._last_t: Instant | None = None
        self._last_field = (0, 0, 0)
        self._last_detect = False
        self._boot_pending = False
        self._followups: list[Instant] = []
        self._followup_at: Instant = _NEVER
        self._vehicles = (0.0, 0.0, 0.0)
        self._vehicles_until: Instant = 0
        self._blip_end: Instant = 0
        self._blip = (0.0, 0.0, 0.0)
        self._next_blip = self._next_t + self._blip_gap()

    @property
    def drift_mg_per_h(self) -> float:
        return math.sqrt(sum(c * c for c in self._drift))

    @property
    def drift_offset_mg(self) -> float:
        """How far the field has moved from the install baseline before the run starts."""
        return math.sqrt(sum(c * c for c in self._offset))

    def _update_vehicles(self, t: Instant) -> None:
        """The field of the vehicles on this bay and (a fraction of) its neighbours at ``t``,
        and until when it holds: recomputed only when some vehicle moves."""
        x = y = z = 0.0
        until = 2**62
        for bay, frac in (
            (self._bay, 1.0),
            (self._left, self._frac_left),
            (self._right, self._frac_right),
        ):
            if bay is None:
                continue
            vector, valid_until = bay.field_at(t)
            until = min(until, valid_until)
            if vector is not None:
                x += vector[0] * frac
                y += vector[1] * frac
                z += vector[2] * frac
        self._vehicles = (x, y, z)
        self._vehicles_until = until

    def _blip_gap(self) -> int:
        return int(self._rng.expovariate(1.0 / self._scenario.blip_interval_s) * 1000) + 1

    def run(self, until: Instant) -> list[SentFrame]:
        """Sample and send until ``until`` (exclusive); the frames it sent, in time order."""
        out: list[SentFrame] = []
        rng = self._rng
        gauss = rng.gauss
        sc = self._scenario
        sigma = sc.noise_mg
        ex, ey, ez = self.earth
        ox, oy, oz = self._offset
        dx, dy, dz = self._drift
        cx, cy, cz = self._temp_coef
        firmware = self.firmware
        jitter = firmware.keepalive_jitter_ms
        start = self._start
        t = self._next_t
        plan, plan_until = self._plan_at(t)  # plans are per block: re-fetch at its end
        while t < until:
            if t >= plan_until:
                plan, plan_until = self._plan_at(t)
            reboot = plan.reboot
            if reboot is not None and reboot.start <= t < reboot.end:
                self._boot_pending = True
                t += SAMPLE_MS
                continue
            hours = (t - start) / _HOUR_MS
            temp = ambient_c(t, sc.temp_amplitude_c) + self._temp_bias_c
            dtemp = temp - _T_INSTALL_C
            bx = ex + ox + dx * hours + cx * dtemp + gauss(0.0, sigma)
            by = ey + oy + dy * hours + cy * dtemp + gauss(0.0, sigma)
            bz = ez + oz + dz * hours + cz * dtemp + gauss(0.0, sigma)
            if t >= self._vehicles_until:
                self._update_vehicles(t)
            vx, vy, vz = self._vehicles
            bx += vx
            by += vy
            bz += vz
            if t >= self._next_blip:
                self._blip = _scaled(random_unit(rng), rng.uniform(35.0, 90.0))
                self._blip_end = t + rng.randint(1, 4) * SAMPLE_MS
                self._next_blip = t + self._blip_gap()
                if _last_words(plan, t):
                    self._blip_end = t
            if t < self._blip_end:
                bx += self._blip[0]
                by += self._blip[1]
                bz += self._blip[2]
            mx, my, mz = round(bx), round(by), round(bz)
            if not (-32768 <= mx <= 32767 and -32768 <= my <= 32767 and -32768 <= mz <= 32767):
                mx, my, mz = _clamp16(bx), _clamp16(by), _clamp16(bz)
            ddx, ddy, ddz = bx - ex, by - ey, bz - ez
            detect = ddx * ddx + ddy * ddy + ddz * ddz > DETECT_MG * DETECT_MG
            fault = plan.fault is not None and plan.fault.start <= t < plan.fault.end
            lx, ly, lz = self._last_field
            moved = (mx - lx) ** 2 + (my - ly) ** 2 + (mz - lz) ** 2 > MOVE_MG * MOVE_MG
            last_t = self._last_t
            changed = detect != self._last_detect or moved
            if (
                self._boot_pending
                or (fault and firmware.fault_frames)
                or last_t is None
                or changed
                or t >= self._followup_at
                or t - last_t >= self._quiet_ms
            ):
                if changed:
                    self._followups = [t + k for k in firmware.repeats_ms]
                if jitter:
                    early = self._fw_rng.randint(0, jitter)
                    self._quiet_ms = _whole_samples(self.keepalive_ms - early)
                while self._followups and self._followups[0] <= t:
                    self._followups.pop(0)
                self._followup_at = self._followups[0] if self._followups else _NEVER
                battery = self._battery0 - 0.5 * hours
                flags = FLAG_DETECT if detect else 0
                if battery < LOW_BATT_MV:
                    flags |= FLAG_LOW_BATT
                if fault:
                    flags |= FLAG_FAULT
                if self._boot_pending:
                    flags |= FLAG_BOOT
                    self._seq = 0
                    self._boot_pending = False
                silent = plan.silent is not None and plan.silent.start <= t < plan.silent.end
                out.append(
                    SentFrame(
                        t=t,
                        sensor=self.index,
                        seq=self._seq,
                        flags=flags,
                        mx=mx,
                        my=my,
                        mz=mz,
                        battery_mv=max(0, round(battery + gauss(0.0, 2.0))),
                        temp_dc=round(temp * 10 + gauss(0.0, 1.0)),
                        silent=silent,
                    )
                )
                self._seq = (self._seq + 1) & 0xFFFF
                self._last_t = t
                self._last_field = (mx, my, mz)
                self._last_detect = detect
            t += SAMPLE_MS
        self._next_t = t
        return out
