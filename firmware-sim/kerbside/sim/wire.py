"""What the line does to frames: loss, corruption, truncation, duplication, noise between
frames (serial); loss, scanner duplicates and malformed adverts (BLE); and how a serial reader
receives the bytes in chunks that split lines or hold several. Pure: randomness comes in as a
seeded ``random.Random``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from kerbside.core.instants import Instant
from kerbside.sim.ble import COMPANY_ID, encode_advert
from kerbside.sim.kbs1 import encode_frame
from kerbside.sim.scenario import WireFaults
from kerbside.sim.sensor import SentFrame

SerialFate = Literal["ok", "lost", "corrupted", "truncated", "duplicated", "silent"]
BleFate = Literal["ok", "lost", "duplicate", "malformed", "silent"]

BYTE_MS = 10 / 115.2  # 8N1 at 115200 baud: 10 bits a byte
_MERGE_MS = 50.0  # a late reader gathers bytes that arrive this close together
_HEX = "0123456789ABCDEF"
_CORRUPT_CHARS = [c for c in range(0x20, 0x7F) if c not in b"$*"]


@dataclass(frozen=True, slots=True)
class SerialEmission:
    """The bytes one sent frame put on its port (empty if lost), with what happened to it."""

    t: Instant
    port: int
    data: bytes
    frame: SentFrame
    fate: SerialFate


@dataclass(frozen=True, slots=True)
class BleEmission:
    """One advert as a scanner reports it (``frame`` is None for a malformed advert)."""

    t: Instant
    address: str
    rssi: int
    company_id: int
    payload: bytes
    frame: SentFrame | None
    fate: BleFate


@dataclass(frozen=True, slots=True)
class CaptureChunk:
    """One read of a serial port: what a capture record holds."""

    t: Instant
    port: int
    data: bytes


def serial_emission(
    frame: SentFrame,
    *,
    sensor_id: str,
    port: int,
    lower_hex: bool,
    rng: random.Random,
    faults: WireFaults,
) -> SerialEmission:
    line = encode_frame(
        sensor_id,
        frame.seq,
        frame.flags,
        frame.mx,
        frame.my,
        frame.mz,
        frame.battery_mv,
        frame.temp_dc,
        lower_hex=lower_hex,
    )
    if frame.silent:
        return SerialEmission(frame.t, port, b"", frame, "silent")
    pick = rng.random()
    fate: SerialFate = "ok"
    if pick < faults.lost:
        return SerialEmission(frame.t, port, b"", frame, "lost")
    pick -= faults.lost
    if pick < faults.corrupted:
        fate, line = "corrupted", _corrupt(line, rng)
    elif (pick := pick - faults.corrupted) < faults.truncated:
        fate, line = "truncated", _truncate(line, rng)
    elif pick - faults.truncated < faults.duplicated:
        fate, line = "duplicated", line + line
    if rng.random() < faults.noise_before:
        line = line_noise(rng) + line
    return SerialEmission(frame.t, port, line, frame, fate)


def _corrupt(line: bytes, rng: random.Random) -> bytes:
    """Change one byte so the checksum no longer matches: a body byte, or a checksum digit."""
    data = bytearray(line)
    star = len(data) - 5
    pos = rng.randrange(1, star + 3)
    if pos == star:
        pos += 1
    if pos > star:  # a checksum digit: a different hex value (a case change would still match)
        old = int(chr(data[pos]), 16)
        data[pos] = ord(_HEX[(old + rng.randint(1, 15)) % 16])
    else:
        choices = [c for c in _CORRUPT_CHARS if c != data[pos]]
        data[pos] = rng.choice(choices)
    return bytes(data)


def _truncate(line: bytes, rng: random.Random) -> bytes:
    """Cut the line short (a reset mid-line); sometimes the line end still follows."""
    cut = rng.randint(1, len(line) - 3)
    return line[:cut] + (b"\r\n" if rng.random() < 0.5 else b"")


def line_noise(rng: random.Random) -> bytes:
    """Bytes a noisy line makes between frames: anything, rarely even a stray ``$``."""
    n = rng.randint(1, 24)
    return bytes(rng.randrange(256) if rng.random() < 0.97 else 0x24 for _ in range(n))


def ble_emissions(
    frame: SentFrame,
    *,
    serial: int,
    address: str,
    rssi_base: int,
    rng: random.Random,
    faults: WireFaults,
) -> list[BleEmission]:
    temp_c = round(frame.temp_dc / 10)
    payload = encode_advert(
        serial, frame.seq, frame.flags, frame.mx, frame.my, frame.mz, frame.battery_mv, temp_c
    )
    t = frame.t + rng.randint(0, 30)
    rssi = rssi_base + rng.randint(-4, 4)
    if frame.silent:
        return [BleEmission(t, address, rssi, COMPANY_ID, payload, frame, "silent")]
    if rng.random() < faults.ble_lost:
        return [BleEmission(t, address, rssi, COMPANY_ID, payload, frame, "lost")]
    out = [BleEmission(t, address, rssi, COMPANY_ID, payload, frame, "ok")]
    if rng.random() < faults.ble_duplicated:  # the scanner reports the same advert twice
        out.append(
            BleEmission(
                t + rng.randint(1, 40),
                address,
                rssi + rng.randint(-2, 2),
                COMPANY_ID,
                payload,
                frame,
                "duplicate",
            )
        )
    if rng.random() < faults.ble_malformed:
        if rng.random() < 0.5:  # a future format version
            bad = bytes([0x02]) + payload[1:]
        else:  # a wrong length: cut short or padded
            n = rng.choice([0, 1, 8, 16, 18, 20, 31])
            bad = (payload + bytes(range(20)))[:n]
        out.append(
            BleEmission(t + rng.randint(1, 40), address, rssi, COMPANY_ID, bad, None, "malformed")
        )
    return out


class PortReader:
    """How a serial port's bytes reach a reader: one after another at line speed (the bus
    carries one line at a time), returned in reads that can split a line anywhere or, when the
    reader is late, hold several lines."""

    def __init__(self, port: int, rng: random.Random) -> None:
        self.port = port
        self._rng = rng
        self._bus_free = 0.0
        self._pending: bytearray = bytearray()
        self._pending_end = 0.0

    def feed(self, t: Instant, data: bytes) -> list[CaptureChunk]:
        """Bytes put on the line at ``t`` (after everything fed before); the reads completed."""
        out: list[CaptureChunk] = []
        if not data:
            return out
        rng = self._rng
        begin = max(float(t), self._bus_free)
        cuts = (
            sorted(rng.sample(range(1, len(data)), rng.randint(1, 2)))
            if (len(data) > 3 and rng.random() < 0.25)
            else []
        )
        prev = 0
        for cut in [*cuts, len(data)]:
            piece = data[prev:cut]
            start = begin + prev * BYTE_MS
            end = begin + cut * BYTE_MS
            prev = cut
            if self._pending and start - self._pending_end < _MERGE_MS and rng.random() < 0.5:
                self._pending += piece  # the reader was late: one read holds both
            else:
                out.extend(self.flush())
                self._pending = bytearray(piece)
            self._pending_end = end
        self._bus_free = begin + len(data) * BYTE_MS
        return out

    def settle(self, now: Instant) -> list[CaptureChunk]:
        """The held read, if nothing fed from ``now`` on can join it any more."""
        if self._pending and now - self._pending_end >= _MERGE_MS:
            return self.flush()
        return []

    def flush(self) -> list[CaptureChunk]:
        if not self._pending:
            return []
        chunk = CaptureChunk(math.ceil(self._pending_end), self.port, bytes(self._pending))
        self._pending = bytearray()
        return [chunk]
