"""What a source of sensor data is: something that delivers received bytes or adverts, stamped.

A source owns its own I/O and its own recovery: a serial port that vanishes is reopened, a BLE
adapter that fails is restarted, each with core's capped, jittered Backoff, and none of it
is the agent's business. The agent only sees ``Received`` values, stamped with the wall-clock
receive time, delivered on its event loop's thread; the same values are what a capture records
(docs/protocols.md), so ``run`` and ``replay`` decode identical inputs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kerbside.core.instants import Instant
from kerbside.edge.model import Frame, Garbage


@dataclass(frozen=True, slots=True)
class SerialChunk:
    """Bytes read from one serial port in one read: part of a line, several lines, or noise."""

    src: str  # "serial:/dev/ttyUSB0"
    t: Instant
    data: bytes


@dataclass(frozen=True, slots=True)
class BleAdvert:
    """One BLE advertisement: manufacturer data by company id."""

    src: str  # "ble"
    t: Instant
    address: str
    rssi: int | None
    mfr: Mapping[int, bytes] = field(default_factory=dict)


Received = SerialChunk | BleAdvert
Emit = Callable[[Received], None]


class Decoder(Protocol):
    """Turns one source's ``Received`` values into frames, keeping the counters health reports.

    One decoder per source (a serial stream's parser holds partial lines between chunks).
    """

    @property
    def bytes_seen(self) -> int:
        """Health ``ports[].bytes``."""

    @property
    def bad_frames(self) -> int:
        """Health ``ports[].bad_frames``."""

    def decode(self, item: Received) -> list[Frame | Garbage]: ...


class Source(abc.ABC):
    """A stream of ``Received`` values from one port or radio, and how to decode them."""

    src: str

    @abc.abstractmethod
    def decoder(self) -> Decoder:
        """A fresh decoder for what this source emits."""

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Deliver what arrives, stamped with its receive time, until cancelled.

        Recovers from I/O errors itself (reopen after ``Backoff.next()``); never returns or raises
        because a device went away. ``emit`` is called on the running loop's thread.
        """

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the device is open right now."""
