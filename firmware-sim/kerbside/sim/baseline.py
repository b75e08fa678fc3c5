"""The naive detector that detectors are compared with: the firmware's DETECT bit, debounced by
time, over the frames that reached the gateway (the simulator's own frames, not parsed bytes).

A state is confirmed once it has held ``confirm_s`` from its first frame with no contrary frame
in between; no frame for ``silence_s`` makes the bay ``unknown`` (``ts`` its last frame), and so
does a FAULT frame, at once. No use of the raw field: drift since install, which leaves DETECT on
over empty bays, fools it, as it fools the firmware.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kerbside.core.instants import Instant
from kerbside.sim.kbs1 import FLAG_DETECT, FLAG_FAULT
from kerbside.sim.sensor import SentFrame
from kerbside.sim.wire import BleEmission, SerialEmission

_ARRIVED = frozenset({"ok", "duplicated", "duplicate"})


@dataclass(frozen=True, slots=True)
class BaselineChange:
    bay_id: str
    state: str  # occupied | vacant | unknown
    ts: Instant
    confirmed_ts: Instant


@dataclass(slots=True)
class _Bay:
    bay_id: str
    published: str = "unknown"
    pending: str | None = None
    pending_since: Instant = 0
    last_seq: int | None = None
    last_t: Instant | None = None


class DetectBitBaseline:
    """Feed it what a street sent (``feed``, window after window), then ``changes(end)``."""

    def __init__(self, bays: Sequence[str], confirm_s: float = 10.0, silence_s: float = 900.0):
        self._bays = [_Bay(bay_id) for bay_id in bays]  # by sensor index in the street
        self._confirm_ms = round(confirm_s * 1000)
        self._silence_ms = round(silence_s * 1000)
        self._out: list[BaselineChange] = []

    def feed(self, serial: Iterable[SerialEmission], ble: Iterable[BleEmission] = ()) -> None:
        arrived = [e.frame for e in serial if e.fate in _ARRIVED]
        arrived += [e.frame for e in ble if e.frame is not None and e.fate in _ARRIVED]
        for frame in sorted(arrived, key=lambda f: (f.t, f.sensor)):
            self._frame(frame)

    def changes(self, end: Instant) -> list[BaselineChange]:
        """Every change confirmed before ``end``, in order of confirmation."""
        for bay in self._bays:
            self._settle(bay, end)
        return sorted(self._out, key=lambda c: (c.confirmed_ts, c.bay_id))

    def _publish(self, bay: _Bay, state: str, ts: Instant, confirmed_ts: Instant) -> None:
        if bay.published != state:
            bay.published = state
            self._out.append(BaselineChange(bay.bay_id, state, ts, confirmed_ts))

    def _settle(self, bay: _Bay, now: Instant) -> None:
        """What came due before ``now``: a pending state's confirmation, then silence."""
        if bay.pending is not None and bay.pending_since + self._confirm_ms <= now:
            self._publish(bay, bay.pending, bay.pending_since, bay.pending_since + self._confirm_ms)
            bay.pending = None
        if bay.last_t is not None and bay.last_t + self._silence_ms <= now:
            self._publish(bay, "unknown", bay.last_t, bay.last_t + self._silence_ms)
            bay.pending = None

    def _frame(self, frame: SentFrame) -> None:
        bay = self._bays[frame.sensor]
        if frame.seq == bay.last_seq:
            return  # a duplicate
        self._settle(bay, frame.t)
        bay.last_seq, bay.last_t = frame.seq, frame.t
        if frame.flags & FLAG_FAULT:
            bay.pending = None
            self._publish(bay, "unknown", frame.t, frame.t)
            return
        state = "occupied" if frame.flags & FLAG_DETECT else "vacant"
        if state == bay.published:
            bay.pending = None
        elif bay.pending != state:
            bay.pending, bay.pending_since = state, frame.t
