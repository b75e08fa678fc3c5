"""KBS1 line encoding (docs/protocols.md), written independently of the edge parser on purpose: the
simulator is a second implementation of the contract, so a shared bug cannot hide in both."""

from __future__ import annotations

FLAG_DETECT = 0x01
FLAG_LOW_BATT = 0x02
FLAG_BOOT = 0x04
FLAG_FAULT = 0x08

MAX_LINE = 128


def checksum(body: bytes) -> int:
    """XOR of every byte of ``body`` (the bytes between ``$`` and ``*``)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def frame_body(  # noqa: PLR0917 (the fields of the line, in its order)
    sensor_id: str,
    seq: int,
    flags: int,
    mx: int,
    my: int,
    mz: int,
    battery_mv: int,
    temp_dc: int,
) -> bytes:
    return f"KBS1,{sensor_id},{seq},{flags:02X},{mx},{my},{mz},{battery_mv},{temp_dc}".encode(
        "ascii"
    )


def encode_frame(  # noqa: PLR0917 (the fields of the line, in its order)
    sensor_id: str,
    seq: int,
    flags: int,
    mx: int,
    my: int,
    mz: int,
    battery_mv: int,
    temp_dc: int,
    *,
    lower_hex: bool = False,
) -> bytes:
    """One complete line, ``$KBS1,...*CS\\r\\n``."""
    body = frame_body(sensor_id, seq, flags, mx, my, mz, battery_mv, temp_dc)
    cs = f"{checksum(body):02x}" if lower_hex else f"{checksum(body):02X}"
    return b"$" + body + b"*" + cs.encode("ascii") + b"\r\n"
