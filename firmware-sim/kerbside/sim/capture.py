"""Capture files of a simulated street (docs/protocols.md), generated window by window so long runs
stay in bounded memory, plus the edge config and ground truth written beside them."""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from kerbside.core.instants import Instant, format_instant
from kerbside.sim.street import SimStreet
from kerbside.sim.wire import BleEmission, CaptureChunk, PortReader, SerialEmission

WINDOW_MS = 600_000
# A read can complete a little after the window that sent its bytes (line time, a late reader):
# records this close to a window's end wait for the next window so the file stays in t order.
_HOLD_BACK_MS = 1_000

Record = dict[str, Any]
# Sees what the sensors sent in each window, before the line and the reader (a baseline detector
# fed the simulator's own frames, say).
Tap = Callable[[list[SerialEmission], list[BleEmission]], None]


def serial_record(chunk: CaptureChunk, src: str) -> Record:
    return {"t": format_instant(chunk.t), "src": src, "data": chunk.data.decode("latin-1")}


def capture_records(
    street: SimStreet,
    end: Instant,
    progress: Callable[[Instant], None] | None = None,
    tap: Tap | None = None,
) -> Iterator[Record]:
    """Every capture record of the street from its current time to ``end``, in ``t`` order."""
    readers = [
        PortReader(p, random.Random(f"{street.config.seed}:reader:{p}"))
        for p in range(len(street.port_names))
    ]
    srcs = [f"serial:{name}" for name in street.port_names]
    held: list[tuple[Instant, int, int, Record]] = []  # (t, order, n, record) heap
    n = 0
    t = street.now
    while t < end:
        until = min(end, t + WINDOW_MS)
        serial, ble = street.advance(until)
        if tap is not None:
            tap(serial, ble)
        for emission in serial:
            for chunk in readers[emission.port].feed(emission.t, emission.data):
                heapq.heappush(held, (chunk.t, 0, n, serial_record(chunk, srcs[chunk.port])))
                n += 1
        for advert in ble:
            if advert.fate in ("lost", "silent"):
                continue
            record = {
                "t": format_instant(advert.t),
                "src": "ble",
                "address": advert.address,
                "rssi": advert.rssi,
                "mfr": {str(advert.company_id): advert.payload.hex()},
            }
            heapq.heappush(held, (advert.t, 1, n, record))
            n += 1
        for reader in readers:
            for chunk in reader.flush() if until >= end else reader.settle(until):
                heapq.heappush(held, (chunk.t, 0, n, serial_record(chunk, srcs[chunk.port])))
                n += 1
        limit = until - _HOLD_BACK_MS if until < end else None
        while held and (limit is None or held[0][0] < limit):
            yield heapq.heappop(held)[3]
        if progress is not None:
            progress(until)
        t = until


def edge_config(
    street: SimStreet,
    outbox: Path,
    port_names: list[str] | None = None,
    ble_backend: str | None = None,
) -> Record:
    """A valid edge config (docs/gateway.md) for the street's gateway."""
    ports = port_names if port_names is not None else street.port_names
    has_ble = any(s.transport == "ble" for s in street.sensors)
    return {
        "gateway_id": street.config.gateway_id,
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "outbox": {"path": str(outbox), "max_mb": 64},
        "detector": {"confirm_occupied_s": 10, "confirm_vacant_s": 10, "silence_s": 900},
        "health_interval_s": 60,
        "clock": {"require_sync": False},
        "serial": [{"port": p, "baudrate": 115200} for p in ports],
        "ble": {
            "enabled": has_ble,
            "company_id": 0xFFFF,
            "adapter": "hci0",
            **({"backend": ble_backend} if ble_backend else {}),
        },
        "sensors": [{"id": s.sensor_id, "bay": s.bay_id} for s in street.sensors],
    }


def dump_yaml(data: Record) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def write_capture(
    street: SimStreet,
    hours: float,
    out_dir: Path,
    progress: Callable[[Instant], None] | None = None,
    tap: Tap | None = None,
) -> tuple[int, Instant]:
    """Write OUT/capture.jsonl, OUT/edge.yaml and OUT/truth.json; the record count and end."""
    out_dir.mkdir(parents=True, exist_ok=True)
    end = street.config.start + round(hours * 3_600_000)
    count = 0
    with (out_dir / "capture.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for record in capture_records(street, end, progress, tap):
            fh.write(json.dumps(record) + "\n")
            count += 1
    config = edge_config(street, (out_dir / "outbox.db").resolve())
    (out_dir / "edge.yaml").write_text(dump_yaml(config), encoding="utf-8")
    (out_dir / "truth.json").write_text(street.truth(end).dumps(), encoding="utf-8")
    return count, end
