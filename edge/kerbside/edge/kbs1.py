"""KBS1, the bay sensors' serial line protocol (docs/protocols.md), as a parser without I/O.

``Kbs1Parser().feed(data)`` takes whatever bytes a serial port delivered and returns the frames and
the garbage they completed. A frame starts at ``$`` and ends at ``\\n``; a ``$`` inside a candidate
means the candidate was cut short (its rest was lost), so the parser resyncs there. Nothing fed in
can raise: a serial line is untrusted input.
"""

from __future__ import annotations

import re

from kerbside.edge.model import Frame, Garbage

MAX_FRAME = 128  # bytes, including the "\r\n"

# Numbers by digits, not by width: "00042" is 42, and the ranges are checked after parsing (a
# line is at most MAX_FRAME bytes, so no number is long enough to cost anything).
_FRAME_RE = re.compile(
    rb"\$(KBS1,([A-Za-z0-9_-]{1,32}),(\d+),([0-9A-Fa-f]{2}),(-?\d+),(-?\d+),"
    rb"(-?\d+),(\d+),(-?\d+))\*([0-9A-Fa-f]{2})\r?\n"
)
_INT16 = range(-32768, 32768)
_UINT16 = range(65536)


def checksum(body: bytes) -> int:
    """XOR of every byte of ``body`` (the bytes between ``$`` and ``*``)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode_frame(frame: Frame, *, lower_hex: bool = False) -> bytes:
    """The KBS1 line for ``frame`` (``temp_c`` is sent in tenths of a degree)."""
    temp_dc = round(frame.temp_c * 10)
    body = (
        f"KBS1,{frame.sensor_id},{frame.seq},{frame.flags:02X},{frame.mx},{frame.my},{frame.mz},"
        f"{frame.battery_mv},{temp_dc}"
    ).encode("ascii")
    cs = f"{checksum(body):02x}" if lower_hex else f"{checksum(body):02X}"
    return b"$" + body + b"*" + cs.encode("ascii") + b"\r\n"


def parse_line(line: bytes) -> Frame | Garbage:
    """One complete line from ``$`` to ``\\n`` inclusive: a frame, or garbage saying why not."""
    match = _FRAME_RE.fullmatch(line)
    if match is None:
        return Garbage(line, "malformed")
    body, sensor_id, seq, flags, mx, my, mz, battery, temp, cs = match.groups()
    if checksum(body) != int(cs, 16):
        return Garbage(line, "bad_checksum")
    seq_i, mx_i, my_i, mz_i = int(seq), int(mx), int(my), int(mz)
    battery_i, temp_i = int(battery), int(temp)
    if (
        seq_i not in _UINT16
        or battery_i not in _UINT16
        or mx_i not in _INT16
        or my_i not in _INT16
        or mz_i not in _INT16
        or temp_i not in _INT16
    ):
        return Garbage(line, "out_of_range")
    return Frame(
        sensor_id=sensor_id.decode("ascii"),
        seq=seq_i,
        flags=int(flags, 16),
        mx=mx_i,
        my=my_i,
        mz=mz_i,
        battery_mv=battery_i,
        temp_c=temp_i / 10,
    )


class Kbs1Parser:
    """Incremental KBS1 parser for one byte stream.

    Counters: ``bytes_seen``; ``frames`` (valid); ``bad_frames`` (candidates that began with ``$``
    and failed: bad checksum, malformed, out of range, oversize, truncated). Bytes outside any
    candidate come out as ``Garbage(reason="noise")`` and are not bad frames.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an oversize line: drop bytes until the next "$"
        self.bytes_seen = 0
        self.frames = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        self.bytes_seen += len(data)
        out: list[Frame | Garbage] = []
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while pos < end:
            if self._skipping or buf[pos] != 0x24:  # "$"
                start = buf.find(b"$", pos)
                stop = end if start < 0 else start
                # The tail of an oversize line was already counted as one bad frame.
                out.append(Garbage(bytes(buf[pos:stop]), "oversize" if self._skipping else "noise"))
                self._skipping = start < 0 and self._skipping
                pos = stop
                continue
            # A candidate starts at pos.
            newline = buf.find(b"\n", pos + 1, pos + MAX_FRAME)
            dollar = buf.find(b"$", pos + 1, newline if newline >= 0 else pos + MAX_FRAME)
            if dollar >= 0:
                out.append(Garbage(bytes(buf[pos:dollar]), "truncated"))
                self.bad_frames += 1
                pos = dollar
                continue
            if newline >= 0:
                item = parse_line(bytes(buf[pos : newline + 1]))
                if isinstance(item, Frame):
                    self.frames += 1
                else:
                    self.bad_frames += 1
                out.append(item)
                pos = newline + 1
                continue
            if end - pos >= MAX_FRAME:
                out.append(Garbage(bytes(buf[pos : pos + MAX_FRAME]), "oversize"))
                self.bad_frames += 1
                pos += MAX_FRAME
                self._skipping = True
                continue
            break  # an incomplete candidate: wait for more bytes
        del buf[:pos]
        return out
