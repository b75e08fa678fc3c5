"""Ground truth of a simulated run: who was parked where and when, and which sensors were
silent, faulty or rebooting. ``truth.json`` is its JSON form (its format is in
firmware-sim/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerbside.core.instants import Instant, format_instant, parse_instant


@dataclass(frozen=True, slots=True)
class TruthSensor:
    sensor_id: str
    bay_id: str
    zone_id: str
    src: str
    transport: str
    address: str | None = None


@dataclass(frozen=True, slots=True)
class TruthSession:
    bay_id: str
    sensor_id: str
    arrival: Instant
    departure: Instant | None  # None: still parked at the end of the run


@dataclass(frozen=True, slots=True)
class TruthSpan:
    sensor_id: str
    start: Instant
    end: Instant


@dataclass(frozen=True, slots=True)
class TruthReboot:
    sensor_id: str
    at: Instant


@dataclass(frozen=True, slots=True)
class Truth:
    scenario: str
    seed: int
    gateway_id: str
    start: Instant
    end: Instant
    sensors: list[TruthSensor]
    sessions: list[TruthSession]
    silent: list[TruthSpan]
    faults: list[TruthSpan]
    reboots: list[TruthReboot]

    def to_json(self) -> dict[str, Any]:
        def opt(t: Instant | None) -> str | None:
            return None if t is None else format_instant(t)

        return {
            "v": 1,
            "scenario": self.scenario,
            "seed": self.seed,
            "gateway_id": self.gateway_id,
            "start": format_instant(self.start),
            "end": format_instant(self.end),
            "sensors": [
                {
                    "sensor_id": s.sensor_id,
                    "bay_id": s.bay_id,
                    "zone_id": s.zone_id,
                    "src": s.src,
                    "transport": s.transport,
                    **({"address": s.address} if s.address else {}),
                }
                for s in self.sensors
            ],
            "sessions": [
                {
                    "bay_id": s.bay_id,
                    "sensor_id": s.sensor_id,
                    "arrival": format_instant(s.arrival),
                    "departure": opt(s.departure),
                }
                for s in self.sessions
            ],
            "silent": [_span(s) for s in self.silent],
            "faults": [_span(s) for s in self.faults],
            "reboots": [
                {"sensor_id": r.sensor_id, "at": format_instant(r.at)} for r in self.reboots
            ],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"


def _span(s: TruthSpan) -> dict[str, str]:
    return {
        "sensor_id": s.sensor_id,
        "start": format_instant(s.start),
        "end": format_instant(s.end),
    }


def truth_from_json(data: dict[str, Any]) -> Truth:
    def opt(text: str | None) -> Instant | None:
        return None if text is None else parse_instant(text)

    return Truth(
        scenario=data["scenario"],
        seed=data["seed"],
        gateway_id=data["gateway_id"],
        start=parse_instant(data["start"]),
        end=parse_instant(data["end"]),
        sensors=[
            TruthSensor(
                s["sensor_id"],
                s["bay_id"],
                s["zone_id"],
                s["src"],
                s["transport"],
                s.get("address"),
            )
            for s in data["sensors"]
        ],
        sessions=[
            TruthSession(
                s["bay_id"], s["sensor_id"], parse_instant(s["arrival"]), opt(s["departure"])
            )
            for s in data["sessions"]
        ],
        silent=[
            TruthSpan(s["sensor_id"], parse_instant(s["start"]), parse_instant(s["end"]))
            for s in data["silent"]
        ],
        faults=[
            TruthSpan(s["sensor_id"], parse_instant(s["start"]), parse_instant(s["end"]))
            for s in data["faults"]
        ],
        reboots=[TruthReboot(r["sensor_id"], parse_instant(r["at"])) for r in data["reboots"]],
    )


def load_truth(path: str | Path) -> Truth:
    return truth_from_json(json.loads(Path(path).read_text(encoding="utf-8")))
