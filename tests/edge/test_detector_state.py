"""The detector's learned levels kept across a restart (snapshot in the outbox database)."""

from __future__ import annotations

import json
from pathlib import Path

from kerbside.edge.agent import Agent
from kerbside.edge.config import DetectorConfig, EdgeConfig
from kerbside.edge.detector import Detector
from kerbside.edge.outbox import Outbox
from tests.edge.test_detector import BASE, CAR, S, Sensor, add, hold, ramp, settle_vacant, summary

BAYS = {"S-1": "BAY-1", "S-2": "BAY-2"}


def parked_detector() -> tuple[Detector, Sensor]:
    """A detector that saw the bay empty, then a car arrive and stay (DETECT never set)."""
    detector = Detector(DetectorConfig(), BAYS)
    sensor = Sensor(detector)
    settle_vacant(sensor)
    ramp(sensor, 200, BASE, add(BASE, CAR))
    hold(sensor, 262, 1000, add(BASE, CAR))
    assert detector.state_of("S-1") == "occupied"
    return detector, sensor


def test_a_restart_over_a_parked_car_goes_on_from_the_saved_levels(tmp_path: Path) -> None:
    detector, _ = parked_detector()
    outbox = Outbox(tmp_path / "outbox.db", "gw-1")
    outbox.save_state("detector", json.dumps(detector.snapshot(1000 * S)))
    outbox.close()

    reopened = Outbox(tmp_path / "outbox.db", "gw-1")
    text = reopened.load_state("detector")
    reopened.close()
    assert text is not None
    restarted = Detector(DetectorConfig(), BAYS)
    assert restarted.restore(json.loads(text), 1300 * S) == 1
    sensor = Sensor(restarted)
    out = hold(sensor, 1300, 2000, add(BASE, CAR))
    out += ramp(sensor, 2000, add(BASE, CAR), BASE)  # the car leaves after the restart
    out += hold(sensor, 2062, 2300, BASE)
    assert summary(out) == [("occupied", 1300, 1310, None), ("vacant", 2000, 2010, None)]


def test_without_saved_levels_the_same_restart_takes_the_car_for_the_empty_bay() -> None:
    """What the snapshot saves: with DETECT never set, a fresh start believes the car's level is
    the empty bay (and the car's going an arrival)."""
    sensor = Sensor(Detector(DetectorConfig(), BAYS))
    out = hold(sensor, 1300, 2000, add(BASE, CAR))
    out += ramp(sensor, 2000, add(BASE, CAR), BASE)
    out += hold(sensor, 2062, 2300, BASE)
    assert [state for state, _, _, _ in summary(out)] == ["vacant", "occupied"]


def test_a_snapshot_older_than_silence_is_not_taken_back() -> None:
    detector, _ = parked_detector()
    snapshot = detector.snapshot(1000 * S)
    restarted = Detector(DetectorConfig(silence_s=900), BAYS)
    assert restarted.restore(snapshot, (1000 + 900) * S) == 0
    assert restarted.restore(snapshot, 999 * S) == 0  # a clock behind the save: not trusted
    assert restarted.restore(snapshot, (1000 + 899) * S) == 1


def test_held_and_unseen_sensors_are_not_saved() -> None:
    detector = Detector(DetectorConfig(), BAYS)
    sensor = Sensor(detector)
    sensor.send(0, BASE, flags=1)  # DETECT on, not trusted: held
    hold(sensor, 60, 300, BASE, flags=1)
    assert detector.snapshot(300 * S)["sensors"] == {}


def test_the_agent_saves_its_detector_and_a_restarted_agent_takes_it_back(tmp_path: Path) -> None:
    config = EdgeConfig.model_validate(
        {
            "gateway_id": "gw-test",
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"require_sync": False},
            "sensors": [{"id": "S-1", "bay": "BAY-1"}, {"id": "S-2", "bay": "BAY-2"}],
        }
    )
    wall = 1000 * S
    agent = Agent(config, [], clock=lambda: wall)
    sensor = Sensor(agent.detector)
    settle_vacant(sensor)
    ramp(sensor, 200, BASE, add(BASE, CAR))
    hold(sensor, 262, 1000, add(BASE, CAR))
    agent.save_state()
    agent.outbox.close()
    wall = 1500 * S
    restarted = Agent(config, [], clock=lambda: wall)
    saved = restarted.detector.snapshot(wall)["sensors"]
    restarted.outbox.close()
    assert list(saved) == ["S-1"]
    assert saved["S-1"]["mode"] == "occupied"
    assert restarted.detector.state_of("S-1") == "unknown"  # published only when confirmed anew
