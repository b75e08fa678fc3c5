"""Capture files (docs/protocols.md): JSON Lines of everything a gateway received, in arrival order.

Serial chunks keep their raw bytes as latin-1 text (lossless); BLE adverts keep their
manufacturer data as hex per company id. ``t`` is the receive time, the only clock replay uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from kerbside.core.instants import Instant, InstantError, format_instant, parse_instant


@dataclass(frozen=True, slots=True)
class SerialRecord:
    t: Instant
    src: str
    data: bytes


@dataclass(frozen=True, slots=True)
class BleRecord:
    t: Instant
    src: str
    address: str
    rssi: int | None
    mfr: Mapping[int, bytes]


@dataclass(frozen=True, slots=True)
class BadCaptureLine:
    """A capture line that could not be read; replay reports it and goes on."""

    line_no: int
    message: str


CaptureRecord = SerialRecord | BleRecord


class BadRecordError(ValueError):
    """A capture line that is not a record; the message is one line."""


def serial_line(t: Instant, src: str, data: bytes) -> str:
    """The capture line of a serial chunk (no newline)."""
    record = {"t": format_instant(t), "src": src, "data": data.decode("latin-1")}
    return json.dumps(record, separators=(",", ":"))


def ble_line(t: Instant, address: str, rssi: int | None, mfr: Mapping[int, bytes]) -> str:
    """The capture line of a BLE advertisement (no newline)."""
    record = {
        "t": format_instant(t),
        "src": "ble",
        "address": address,
        "rssi": rssi,
        "mfr": {str(company): payload.hex() for company, payload in sorted(mfr.items())},
    }
    return json.dumps(record, separators=(",", ":"))


class CaptureWriter:
    """Appends capture records to a file, one line each, flushed per record (so a crash or a
    power cut loses at most the line being written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8", newline="\n")

    def serial(self, t: Instant, src: str, data: bytes) -> None:
        self._write(serial_line(t, src, data))

    def ble(self, t: Instant, address: str, rssi: int | None, mfr: Mapping[int, bytes]) -> None:
        self._write(ble_line(t, address, rssi, mfr))

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def parse_record(text: str) -> CaptureRecord:
    """One capture line; raises BadRecordError with a one-line reason."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecordError(f"not JSON: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise BadRecordError("not a JSON object")
    t_text = obj.get("t")
    if not isinstance(t_text, str):
        raise BadRecordError("t: missing or not a string")
    try:
        t = parse_instant(t_text)
    except InstantError as exc:
        raise BadRecordError(f"t: {exc}") from exc
    src = obj.get("src")
    if not isinstance(src, str) or not src:
        raise BadRecordError("src: missing or not a string")
    if src == "ble" or "mfr" in obj:
        return _ble_record(t, src, obj)
    data = obj.get("data")
    if not isinstance(data, str):
        raise BadRecordError("data: missing or not a string")
    try:
        raw = data.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise BadRecordError("data: characters outside latin-1") from exc
    return SerialRecord(t, src, raw)


def _ble_record(t: Instant, src: str, obj: dict[str, object]) -> BleRecord:
    address = obj.get("address")
    if not isinstance(address, str):
        raise BadRecordError("address: missing or not a string")
    rssi = obj.get("rssi")
    if rssi is not None and (not isinstance(rssi, int) or isinstance(rssi, bool)):
        raise BadRecordError("rssi: not an integer")
    mfr_obj = obj.get("mfr")
    if not isinstance(mfr_obj, dict):
        raise BadRecordError("mfr: missing or not an object")
    mfr: dict[int, bytes] = {}
    for key, value in mfr_obj.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) <= 0xFFFF):
            raise BadRecordError(f"mfr: company id {key!r} is not a decimal 0..65535")
        if not isinstance(value, str):
            raise BadRecordError(f"mfr.{key}: not a hex string")
        try:
            mfr[int(key)] = bytes.fromhex(value)
        except ValueError as exc:
            raise BadRecordError(f"mfr.{key}: not a hex string") from exc
    return BleRecord(t, src, address, rssi, mfr)


def read_capture(path: str | Path) -> Iterator[CaptureRecord | BadCaptureLine]:
    """Every record of a capture, or a BadCaptureLine for each line that is not one. A byte
    order mark at the start of the file (Windows editors add one) is not part of line 1."""
    # utf-8-sig drops a BOM at the very start only: one anywhere else stays, and is no JSON
    with Path(path).open("r", encoding="utf-8-sig", errors="replace", newline="\n") as file:
        for line_no, line in enumerate(file, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                yield parse_record(text)
            except BadRecordError as exc:
                yield BadCaptureLine(line_no, str(exc))
