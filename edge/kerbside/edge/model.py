"""Domain values of the edge agent: what a sensor said, and what the detector concluded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kerbside.core.instants import Instant, format_instant

FLAG_DETECT = 0x01
FLAG_LOW_BATT = 0x02
FLAG_BOOT = 0x04
FLAG_FAULT = 0x08

State = Literal["occupied", "vacant", "unknown"]
UnknownReason = Literal["sensor_silent", "sensor_fault"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid sensor reading, from a KBS1 line or a BLE advertisement."""

    sensor_id: str
    seq: int
    flags: int
    mx: int
    my: int
    mz: int
    battery_mv: int
    temp_c: float

    @property
    def detect(self) -> bool:
        return bool(self.flags & FLAG_DETECT)

    @property
    def fault(self) -> bool:
        return bool(self.flags & FLAG_FAULT)


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes a parser threw away, and why (``bad_checksum``, ``oversize``, ``malformed``...)."""

    data: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class OccupancyChange:
    """A confirmed change of a bay's state, before the outbox gives it a seq and an event id."""

    bay_id: str
    sensor_id: str
    state: State
    ts: Instant  # when the new state began (its first observation)
    confirmed_ts: Instant  # when it was confirmed
    reason: UnknownReason | None = None


def event_payload(
    change: OccupancyChange, gateway_id: str, epoch: str, seq: int
) -> dict[str, object]:
    """The occupancy event (docs/protocols.md) for a change numbered ``seq`` in outbox ``epoch``."""
    return {
        "v": 1,
        "event_id": f"{gateway_id}:{epoch}:{seq}",
        "gateway_id": gateway_id,
        "seq": seq,
        "bay_id": change.bay_id,
        "sensor_id": change.sensor_id,
        "state": change.state,
        "ts": format_instant(change.ts),
        "confirmed_ts": format_instant(change.confirmed_ts),
        "reason": change.reason,
    }
