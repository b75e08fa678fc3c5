"""Sensor incidents, planned per block of simulated time (one hour, or the whole run if
shorter): each sensor reboots once per block; a few sensors fall silent past ``silence_s``; a
few send a short run of FAULT frames. Plans are pure functions of (seed, block), so any block
can be computed on its own and the street can be generated window by window."""

from __future__ import annotations

import random
from dataclasses import dataclass

from kerbside.core.instants import Instant

SILENCE_MS = (930_000, 1_200_000)  # longer than the edge's default silence_s (900 s)
FAULT_MS = (5_000, 20_000)
REBOOT_DOWN_MS = (2_000, 8_000)


@dataclass(frozen=True, slots=True)
class Interval:
    start: Instant
    end: Instant


@dataclass(frozen=True, slots=True)
class SensorPlan:
    """What happens to one sensor in one block."""

    reboot: Interval | None  # down from start; back with BOOT and seq 0 at the first sample >= end
    silent: Interval | None
    fault: Interval | None


def plan_block(
    seed: int, n_sensors: int, block: int, block_start: Instant, block_ms: int
) -> list[SensorPlan]:
    rng = random.Random(f"{seed}:plan:{block}")
    silent_set = set(rng.sample(range(n_sensors), min(n_sensors, max(1, n_sensors // 50))))
    fault_set = set(rng.sample(range(n_sensors), min(n_sensors, max(1, n_sensors // 20))))
    block_end = block_start + block_ms
    plans: list[SensorPlan] = []
    for index in range(n_sensors):
        busy: list[Interval] = []
        silent = None
        if index in silent_set:
            length = rng.randint(*SILENCE_MS)
            latest = block_end - 300_000 - length
            if latest > block_start + 300_000:
                start = rng.randint(block_start + 300_000, latest)
                silent = Interval(start, start + length)
                busy.append(silent)
        fault = None
        if index in fault_set:
            length = rng.randint(*FAULT_MS)
            fault = _place(rng, block_start + 150_000, block_end - 150_000 - length, length, busy)
            if fault is not None:
                busy.append(fault)
        reboot = None
        down = rng.randint(*REBOOT_DOWN_MS)
        reboot = _place(rng, block_start + 30_000, block_end - 30_000 - down, down, busy)
        plans.append(SensorPlan(reboot=reboot, silent=silent, fault=fault))
    return plans


def _place(
    rng: random.Random, lo: Instant, hi: Instant, length: int, busy: list[Interval]
) -> Interval | None:
    """An interval of ``length`` starting in [lo, hi], at least 60 s clear of ``busy``."""
    if hi <= lo:
        return None
    for _ in range(30):
        start = rng.randint(lo, hi)
        if all(start + length + 60_000 <= b.start or start >= b.end + 60_000 for b in busy):
            return Interval(start, start + length)
    return None
