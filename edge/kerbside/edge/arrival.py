"""Where a sensor's frame stands among the frames heard from it before. No I/O, no clock.

A sensor numbers its frames 0..65535, one more a frame, wrapping to 0, and starts again at 0
(with ``BOOT``) after a reboot; it sends at most one frame a second. On the way a frame may be
lost, repeated (a line sending a line twice; a scanner reporting an advert each time the sensor
sends it, sometimes after the sensor's next one) or delivered a little out of order. So, with
the last ``WINDOW`` frames taken kept:

- A copy of one of them is a ``DUPLICATE``: a copy of the latest whenever it comes, of an older
  one if it comes within ``LATE_MS`` of the latest (later, the sensor may have rebooted since and
  said the same again). A frame with the latest's ``seq`` is one too, whatever it says, unless it
  is a ``BOOT`` frame (a second reboot).
- A frame less than ``WINDOW`` behind the latest, within ``LATE_MS`` of it, whose ``seq`` is none
  of theirs, is ``LATE``: sent before the latest and delivered after it, its reading is older
  than one already taken.
- Anything else is taken, and becomes the latest: the ``NEXT`` frame; one ``AFTER_GAP`` (frames
  lost between); a ``RESTART`` (``BOOT``, or a ``seq`` counting up from 0 again, too far on to be
  a wrap in the time gone by: its ``BOOT`` frame was lost); or ``UNRELATED`` (no gap that can be
  counted). So a frame just behind the latest whose ``seq`` was heard saying something else is
  taken, as a restart if its ``seq`` is that low: the sensor has counted up to it again.

``DUPLICATE`` and ``LATE`` frames are dropped; a late frame stays counted among the lost ones,
as it was when the frame after it came.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import Enum

from kerbside.core.instants import Instant
from kerbside.edge.model import FLAG_BOOT, Frame

WINDOW = 16  # frames kept a sensor: a repeat or a late frame is fewer than this behind the latest
LATE_MS = 30_000  # how much later than the latest frame such a frame may still come
_SLACK = 30  # frames a line or a slow read may bunch up (at one frame a second: 30 s)
_SEQ_MOD = 0x10000

# A frame as kept: seq, flags, mx, my, mz, battery_mv, temp in tenths (13 bytes, where a Frame
# takes some 300: a gateway keeps WINDOW of them for each of its thousands of sensors).
_RECORD = struct.Struct("<HBHHHHH")
_SEQ = slice(0, 2)


class Arrival(Enum):
    """What a frame is, next to the frames heard before it."""

    FIRST = "first"  # the first heard from the sensor
    NEXT = "next"  # its seq follows the latest's: no frame lost, no reboot between
    AFTER_GAP = "after-gap"  # frames were lost since the latest
    RESTART = "restart"  # the sensor rebooted since the latest
    UNRELATED = "unrelated"  # a seq that neither follows nor restarts
    DUPLICATE = "duplicate"  # a copy of a frame heard: dropped
    LATE = "late"  # sent before the latest, delivered after it: dropped


def _record(frame: Frame) -> bytes:
    # Every field in its wire range (a parser's frames are): masked, so no frame can raise.
    return _RECORD.pack(
        frame.seq & 0xFFFF,
        frame.flags & 0xFF,
        frame.mx & 0xFFFF,
        frame.my & 0xFFFF,
        frame.mz & 0xFFFF,
        frame.battery_mv & 0xFFFF,
        round(frame.temp_c * 10) & 0xFFFF,
    )


class RecentFrames:
    """One sensor's last ``WINDOW`` frames taken, the latest's seq and when it came."""

    __slots__ = ("_at", "_records", "_seq")

    def __init__(self) -> None:
        self._records = b""  # packed, oldest first
        self._seq: int | None = None
        self._at: Instant | None = None

    def arrive(self, frame: Frame, now: Instant) -> tuple[Arrival, int]:
        """What ``frame``, come at ``now``, is (see the module docstring), and how many frames
        it shows were lost. A frame that is not dropped becomes the latest."""
        seq, latest, at = frame.seq, self._seq, self._at
        record = _record(frame)
        if latest is None or at is None:
            return self._take(record, seq, now, Arrival.FIRST, 0)
        boot = frame.flags & FLAG_BOOT
        behind = (latest - seq) % _SEQ_MOD
        if behind == 0 and not boot:
            return Arrival.DUPLICATE, 0
        soon = now - at <= LATE_MS
        # (bytes in bytes first: a search at any offset, cheap, and nearly always a miss)
        if (behind == 0 or soon) and record in self._records and record in self._heard():
            return Arrival.DUPLICATE, 0
        if (
            not boot
            and behind < WINDOW
            and soon
            and all(heard[_SEQ] != record[_SEQ] for heard in self._heard())
        ):
            return Arrival.LATE, 0
        if boot:
            return self._take(record, seq, now, Arrival.RESTART, 0)
        # At most one frame a sample, a sample a second: no more than this many can have been
        # sent since the latest (with slack for frames a line or a read delayed, then delivered
        # together).
        sent = (now - at) // 1000 + _SLACK
        gap = (seq - latest) % _SEQ_MOD
        if gap <= sent and gap < _SEQ_MOD // 2:
            arrival = Arrival.NEXT if gap == 1 else Arrival.AFTER_GAP
            return self._take(record, seq, now, arrival, gap - 1)
        if seq <= sent:  # counting up from 0 again: its frames before this one were lost
            return self._take(record, seq, now, Arrival.RESTART, seq)
        return self._take(record, seq, now, Arrival.UNRELATED, 0)

    def _heard(self) -> Iterator[bytes]:
        records, size = self._records, _RECORD.size
        return (records[i : i + size] for i in range(0, len(records), size))

    def _take(
        self, record: bytes, seq: int, now: Instant, arrival: Arrival, lost: int
    ) -> tuple[Arrival, int]:
        self._records = self._records[-(WINDOW - 1) * _RECORD.size :] + record
        self._seq, self._at = seq, now
        return arrival, lost
