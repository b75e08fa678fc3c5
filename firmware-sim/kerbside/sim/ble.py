"""BLE advertisement payloads (docs/protocols.md): 17 bytes, little-endian, under a company id."""

from __future__ import annotations

import struct

COMPANY_ID = 0xFFFF
FORMAT_VERSION = 0x01
_ADVERT = struct.Struct("<BIHBhhhHb")
ADVERT_LEN = _ADVERT.size  # 17


def ble_sensor_id(serial: int) -> str:
    return f"BLE-{serial:08X}"


def encode_advert(  # noqa: PLR0917 (the fields of the payload, in its order)
    serial: int,
    seq: int,
    flags: int,
    mx: int,
    my: int,
    mz: int,
    battery_mv: int,
    temp_c: int,
    *,
    version: int = FORMAT_VERSION,
) -> bytes:
    """The manufacturer-specific payload of one advert (17 bytes)."""
    return _ADVERT.pack(
        version,
        serial & 0xFFFFFFFF,
        seq & 0xFFFF,
        flags & 0xFF,
        _int16(mx),
        _int16(my),
        _int16(mz),
        battery_mv & 0xFFFF,
        max(-128, min(127, temp_c)),
    )


def _int16(value: int) -> int:
    return max(-32768, min(32767, value))
