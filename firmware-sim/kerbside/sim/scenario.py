"""Scenarios: how noisy, how drifty and how busy a simulated street is.

Every scenario keeps the frame faults (loss, corruption, truncation, duplicates, line noise,
chunking), reboots, a silent sensor and FAULT runs, so a parser is always exercised; they differ
in the physics the detector has to see through.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    noise_mg: float  # Gaussian noise per axis, standard deviation
    blip_interval_s: float  # mean time between passing-car blips, per sensor
    # Fraction of a neighbour's signature seen, min..max. Both neighbours at the top of the
    # range with the strongest cars, aligned, stay under the weakest car's 55 mG.
    interference: tuple[float, float]
    drift_mg_per_h: tuple[float, float]  # long-term drift rate, min..max
    drift_offset_mg: tuple[float, float]  # drift accumulated since install at the run's start
    temp_coef_mg_per_c: tuple[float, float]  # field change per degree C, min..max
    temp_amplitude_c: float  # half the daily temperature swing


@dataclass(frozen=True, slots=True)
class WireFaults:
    """Per-frame probabilities of what the line does to a frame (serial) or advert (BLE)."""

    lost: float = 0.015
    corrupted: float = 0.01
    truncated: float = 0.005
    duplicated: float = 0.005
    noise_before: float = 0.02
    ble_lost: float = 0.02
    ble_duplicated: float = 0.03
    ble_malformed: float = 0.01


SCENARIOS: dict[str, Scenario] = {
    "clean": Scenario(
        name="clean",
        noise_mg=1.0,
        blip_interval_s=600.0,
        interference=(0.02, 0.05),
        drift_mg_per_h=(0.0, 0.0),
        drift_offset_mg=(0.0, 3.0),
        temp_coef_mg_per_c=(0.0, 0.1),
        temp_amplitude_c=4.0,
    ),
    "noisy": Scenario(
        name="noisy",
        noise_mg=4.0,
        blip_interval_s=240.0,
        interference=(0.04, 0.07),
        drift_mg_per_h=(0.0, 2.0),
        drift_offset_mg=(0.0, 8.0),
        temp_coef_mg_per_c=(0.1, 0.4),
        temp_amplitude_c=5.0,
    ),
    "drifting": Scenario(
        name="drifting",
        noise_mg=2.0,
        blip_interval_s=600.0,
        interference=(0.03, 0.07),
        drift_mg_per_h=(20.0, 30.0),
        drift_offset_mg=(40.0, 120.0),
        temp_coef_mg_per_c=(1.5, 3.0),
        temp_amplitude_c=6.0,
    ),
}
