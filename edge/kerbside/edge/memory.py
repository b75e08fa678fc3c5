"""What the detector keeps of each bay beyond the frames: a read-only view of its phase and
levels (for ``kerbside-edge status``), and the learned levels saved across a restart."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kerbside.core.instants import Instant
from kerbside.edge.candidate import CandidatePhase
from kerbside.edge.field import Level, Vector
from kerbside.edge.model import State, UnknownReason
from kerbside.edge.track import FirstLevel, SensorTrack


@dataclass(frozen=True, slots=True)
class BayView:
    """A read-only look at what the detector holds for one sensor's bay (for ``status``)."""

    sensor_id: str
    bay_id: str
    published: State  # what was last published (``unknown`` before the first confirmation)
    reason: UnknownReason | None
    belief: State  # what the field says now (may differ while a first level is held)
    first_level: FirstLevel
    candidate: CandidatePhase | None  # a change in progress, if any ...
    candidate_state: State | None  # ... towards this state ...
    candidate_since: Instant | None  # ... since (its ts)
    baseline: Vector | None  # the vacant level (mG), while vacant
    occupied_level: Vector | None  # the occupied level, while occupied
    signature: Vector | None  # the parked car's field at arrival


def view(track: SensorTrack) -> BayView:
    bay = track.bay
    cand = track.cand or track.suspended
    return BayView(
        sensor_id=track.sensor_id,
        bay_id=track.bay_id,
        published=track.published[0],
        reason=track.published[1],
        belief=bay.mode,
        first_level=track.first,
        candidate=None if cand is None else cand.phase,
        candidate_state=None if cand is None else cand.state,
        candidate_since=None if cand is None else cand.start,
        baseline=None if bay.base is None else bay.base.vector,
        occupied_level=None if bay.occ is None else bay.occ.vector,
        signature=bay.signature,
    )


def snapshot(tracks: Iterable[SensorTrack], now: Instant) -> dict[str, Any]:
    """The learned levels of every sensor whose level is known and believed, JSON-able."""
    sensors: dict[str, Any] = {}
    for tr in tracks:
        bay = tr.bay
        if bay.mode == "unknown" or tr.held:
            continue
        sensors[tr.sensor_id] = {
            "mode": bay.mode,
            "base": _level_json(bay.base),
            "occ": _level_json(bay.occ),
            "arrival_base": bay.arrival_base,
            "signature": bay.signature,
            "arrived_at": bay.arrived_at,
            "verified": tr.verified,
            "level_detect": tr.level_detect,
        }
    return {"v": 1, "saved_at": now, "sensors": sensors}


def restore(tracks: Mapping[str, SensorTrack], saved: Mapping[str, Any], tau: float) -> int:
    """Take back saved levels into sensors that know nothing yet; how many were."""
    restored = 0
    for sid, entry in dict(saved).items():
        track = tracks.get(sid)
        mode = entry["mode"]
        if track is None or track.bay.mode != "unknown" or mode not in {"vacant", "occupied"}:
            continue
        bay = track.bay
        bay.base = _level_of_json(entry["base"], tau)
        bay.occ = _level_of_json(entry["occ"], tau)
        bay.arrival_base = _vector_of_json(entry["arrival_base"])
        bay.signature = _vector_of_json(entry["signature"])
        bay.arrived_at = int(entry["arrived_at"])
        if (mode == "vacant" and bay.base is None) or (mode == "occupied" and bay.occ is None):
            bay.forget()
            continue
        bay.mode = mode
        track.first = FirstLevel.BELIEVED
        track.verified = bool(entry["verified"])
        detect = entry["level_detect"]
        track.level_detect = None if detect is None else bool(detect)
        restored += 1
    return restored


def _level_json(level: Level | None) -> list[float] | None:
    return None if level is None else [level.x, level.y, level.z, level.weight]


def _vector_of_json(value: Any) -> Vector | None:
    if value is None:
        return None
    x, y, z = (float(v) for v in value)
    return (x, y, z)


def _level_of_json(value: Any, tau: float) -> Level | None:
    if value is None:
        return None
    x, y, z, weight = (float(v) for v in value)
    return Level((x, y, z), tau, weight)
