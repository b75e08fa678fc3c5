"""When a sensor's firmware sends a frame: the policies of the firmware builds the simulator knows.

Every build samples once a second and sends on a DETECT change, on a move of more than 20 mG
since its last frame, and otherwise at least once per keep-alive period (at most 60 s). That is
all the protocol promises a gateway, and all ``basic`` firmware does: its keep-alive period is
its own (each sensor's somewhere in the last sixth of the promise, each keep-alive a little
early by a random amount), it adds no frame for a self-test failure (FAULT rides on the next
frame it sends anyway), and it never repeats a reading. ``repeating`` firmware also repeats a
changed reading 1, 2, 4 and 8 s later, so one lost frame never hides a change for a minute, and
sends every sample while its self-test fails.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MAX_KEEPALIVE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Firmware:
    name: str
    repeats_ms: tuple[int, ...]  # after a frame sent for a change, its reading again this late
    keepalive_ms: int  # the longest the firmware stays quiet
    # Each sensor's own period lies in [(1 - spread) * keepalive_ms, keepalive_ms] ...
    keepalive_spread: float
    # ... and each keep-alive comes up to this much earlier still.
    keepalive_jitter_ms: int
    fault_frames: bool  # sends every sample while its self-test fails


FIRMWARES: dict[str, Firmware] = {
    "repeating": Firmware(
        name="repeating",
        repeats_ms=(1_000, 2_000, 4_000, 8_000),
        keepalive_ms=MAX_KEEPALIVE_MS,
        keepalive_spread=0.0,
        keepalive_jitter_ms=0,
        fault_frames=True,
    ),
    "basic": Firmware(
        name="basic",
        repeats_ms=(),
        keepalive_ms=MAX_KEEPALIVE_MS,
        keepalive_spread=1 / 6,
        keepalive_jitter_ms=2_000,
        fault_frames=False,
    ),
}


def firmware_named(name: str, keepalive_s: float | None = None) -> Firmware:
    """The firmware build ``name``, with its keep-alive period changed to ``keepalive_s``."""
    if name not in FIRMWARES:
        raise ValueError(f"unknown firmware {name!r} (one of {sorted(FIRMWARES)})")
    firmware = FIRMWARES[name]
    if keepalive_s is None:
        return firmware
    keepalive_ms = round(keepalive_s * 1000)
    if not 1_000 <= keepalive_ms <= MAX_KEEPALIVE_MS:
        raise ValueError(f"a keep-alive period must be 1..60 s, not {keepalive_s:g}")
    return dataclasses.replace(firmware, keepalive_ms=keepalive_ms)
