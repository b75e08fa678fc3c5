"""BLE sensor advertisements (docs/protocols.md), decoded without I/O.

Manufacturer-specific data under one company id (``0xFFFF`` by default), exactly 17 bytes,
little-endian: version ``0x01``, serial uint32 (sensor id ``BLE-%08X``), seq uint16, flags,
mx/my/mz int16, battery_mv uint16, temperature int8 in whole degrees C. Anything else is counted
and ignored; nothing an advert carries can raise.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from kerbside.edge.model import Frame, Garbage

COMPANY_ID = 0xFFFF
FORMAT_VERSION = 0x01
_ADVERT = struct.Struct("<BIHBhhhHb")
ADVERT_LEN = _ADVERT.size  # 17


def sensor_id_of(serial: int) -> str:
    return f"BLE-{serial:08X}"


def decode_payload(payload: bytes) -> Frame | Garbage:
    """One manufacturer-data payload: a frame, or garbage saying why not."""
    if len(payload) != ADVERT_LEN:
        return Garbage(bytes(payload), "bad_length")
    version, serial, seq, flags, mx, my, mz, battery, temp = _ADVERT.unpack(payload)
    if version != FORMAT_VERSION:
        return Garbage(bytes(payload), "bad_version")
    return Frame(
        sensor_id=sensor_id_of(serial),
        seq=seq,
        flags=flags,
        mx=mx,
        my=my,
        mz=mz,
        battery_mv=battery,
        temp_c=float(temp),
    )


def encode_payload(frame: Frame) -> bytes:
    """The advert payload of a frame whose sensor id is ``BLE-%08X`` (for tests and tools)."""
    serial = int(frame.sensor_id.removeprefix("BLE-"), 16)
    return _ADVERT.pack(
        FORMAT_VERSION,
        serial,
        frame.seq,
        frame.flags,
        frame.mx,
        frame.my,
        frame.mz,
        frame.battery_mv,
        round(frame.temp_c),
    )


class BleDecoder:
    """Decodes the adverts of one radio. Counters for health: ``adverts`` (with our company id),
    ``bytes_seen`` (their payload bytes), ``bad_frames`` (wrong length or version); adverts without
    our company id are counted in ``foreign`` and otherwise ignored."""

    def __init__(self, company_id: int = COMPANY_ID) -> None:
        self.company_id = company_id
        self.adverts = 0
        self.foreign = 0
        self.bytes_seen = 0
        self.bad_frames = 0

    def decode_mfr(self, mfr: Mapping[int, bytes]) -> list[Frame | Garbage]:
        payload = mfr.get(self.company_id)
        if payload is None:
            self.foreign += 1
            return []
        self.adverts += 1
        self.bytes_seen += len(payload)
        item = decode_payload(payload)
        if isinstance(item, Garbage):
            self.bad_frames += 1
        return [item]

    def decode(self, item: object) -> list[Frame | Garbage]:
        """The source ``Decoder`` protocol: anything with an ``mfr`` mapping (a ``BleAdvert``)."""
        mfr = getattr(item, "mfr", None)
        if not isinstance(mfr, Mapping):
            return []
        return self.decode_mfr(mfr)
