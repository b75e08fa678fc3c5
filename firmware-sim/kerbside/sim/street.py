"""A simulated street: bays in a row, one sensor each, vehicles coming and going, sensors
rebooting, falling silent and failing self-tests. Pure and reproducible: the same config gives
the same emissions whatever windows ``advance`` is called with."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kerbside.core.instants import Instant, parse_instant
from kerbside.sim.ble import ble_sensor_id
from kerbside.sim.firmware import firmware_named
from kerbside.sim.scenario import SCENARIOS, WireFaults
from kerbside.sim.schedule import Interval, SensorPlan, plan_block
from kerbside.sim.sensor import Sensor
from kerbside.sim.traffic import MIXES, BayTraffic
from kerbside.sim.truth import Truth, TruthReboot, TruthSensor, TruthSession, TruthSpan
from kerbside.sim.wire import BleEmission, SerialEmission, ble_emissions, serial_emission

DEFAULT_START: Instant = parse_instant("2026-11-26T08:00:00Z")
BLOCK_MS = 3_600_000
BLOCK_MARGIN_MS = 120_000  # a bay is vacant this long around its sensor's incidents
BLE_SERIAL_BASE = 0x51A0_0000
DEFAULT_GATEWAY = "sim-gw-01"

Transport = Literal["serial", "ble"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    scenario: str = "clean"
    seed: int = 1
    sensors: int = 10  # KBS1 sensors on serial ports
    ble_sensors: int = 0  # BLE sensors, in bays after the serial ones
    start: Instant = DEFAULT_START
    hours: float | None = None  # run length if known: incidents are planned per min(1 h, run)
    sensors_per_port: int = 50
    gateway_id: str = "sim-gw-01"
    port_names: tuple[str, ...] = ()  # default /dev/ttyUSB<p>
    faults: WireFaults = field(default_factory=WireFaults)
    # A given street instead of the generated one: bays with their sensors (ids starting with
    # ``BLE-`` advertise over BLE), and optionally the vehicles' visits per bay id (then no
    # random traffic); ``incidents=False`` keeps reboots but no silences or FAULT runs.
    layout: tuple[BaySpec, ...] = ()
    visits: Mapping[str, Sequence[tuple[Instant, Instant]]] | None = None
    incidents: bool = True
    firmware: str = "repeating"  # a build of kerbside.sim.firmware
    keepalive_s: float | None = None  # the firmware's keep-alive period, if not its own
    traffic: str = "standard"  # a mix of kerbside.sim.traffic


@dataclass(frozen=True, slots=True)
class BaySpec:
    bay_id: str
    sensor_id: str
    zone_id: str


@dataclass(frozen=True, slots=True)
class SensorInfo:
    index: int
    sensor_id: str
    bay_id: str
    zone_id: str
    transport: Transport
    port: int | None  # serial port index
    src: str  # capture `src`: "serial:<port name>" or "ble"
    address: str | None  # BLE address
    ble_serial: int | None


class SimStreet:
    def __init__(self, config: SimConfig) -> None:
        if config.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {config.scenario!r} (one of {sorted(SCENARIOS)})")
        if config.traffic not in MIXES:
            raise ValueError(f"unknown traffic {config.traffic!r} (one of {sorted(MIXES)})")
        firmware = firmware_named(config.firmware, config.keepalive_s)
        layout = list(config.layout) or default_layout(config.sensors, config.ble_sensors)
        if not layout:
            raise ValueError("a street needs at least one sensor")
        self.config = config
        self.scenario = SCENARIOS[config.scenario]
        n = len(layout)
        self._n = n
        horizon_ms = None if config.hours is None else round(config.hours * BLOCK_MS)
        self._block_ms = BLOCK_MS if horizon_ms is None else max(1, min(BLOCK_MS, horizon_ms))
        self._plans: dict[int, list[SensorPlan]] = {}
        n_serial = sum(1 for spec in layout if not spec.sensor_id.startswith("BLE-"))
        per_port = max(1, config.sensors_per_port)
        n_ports = -(-n_serial // per_port)
        names = list(config.port_names) or [f"/dev/ttyUSB{p}" for p in range(n_ports)]
        if len(names) < n_ports:
            raise ValueError(f"{n_ports} ports needed, {len(names)} named")
        self.port_names = names[:n_ports]
        self.sensors: list[SensorInfo] = []
        serial_seen = 0
        for i, spec in enumerate(layout):
            if spec.sensor_id.startswith("BLE-"):
                serial = int(spec.sensor_id[4:], 16)
                address = f"C0:FF:EE:{(i >> 16) & 0xFF:02X}:{(i >> 8) & 0xFF:02X}:{i & 0xFF:02X}"
                self.sensors.append(
                    SensorInfo(
                        i,
                        spec.sensor_id,
                        spec.bay_id,
                        spec.zone_id,
                        "ble",
                        None,
                        "ble",
                        address,
                        serial,
                    )
                )
                continue
            port = serial_seen // per_port
            serial_seen += 1
            self.sensors.append(
                SensorInfo(
                    i,
                    spec.sensor_id,
                    spec.bay_id,
                    spec.zone_id,
                    "serial",
                    port,
                    f"serial:{self.port_names[port]}",
                    None,
                    None,
                )
            )
        visits = config.visits
        self.bays = [
            BayTraffic(
                config.seed,
                i,
                config.start,
                self._blocker(i),
                fixed=None if visits is None else visits.get(self.sensors[i].bay_id, ()),
                mix=MIXES[config.traffic],
            )
            for i in range(n)
        ]
        self._models = [
            Sensor(
                seed=config.seed,
                index=i,
                sensor_id=self.sensors[i].sensor_id,
                scenario=self.scenario,
                start=config.start,
                bay=self.bays[i],
                left=self.bays[i - 1] if i > 0 else None,
                right=self.bays[i + 1] if i + 1 < n else None,
                plan_at=self._plan_getter(i),
                firmware=firmware,
            )
            for i in range(n)
        ]
        self._wire_rngs = [random.Random(f"{config.seed}:wire:{i}") for i in range(n)]
        self._rssi = [random.Random(f"{config.seed}:rssi:{i}").randint(-92, -58) for i in range(n)]
        self.now = config.start

    @property
    def models(self) -> list[Sensor]:
        return list(self._models)

    # -- incidents ----------------------------------------------------------------------------

    def _block_plans(self, block: int) -> list[SensorPlan]:
        plans = self._plans.get(block)
        if plans is None:
            begin = self.config.start + block * self._block_ms
            plans = plan_block(self.config.seed, self._n, block, begin, self._block_ms)
            if not self.config.incidents:
                plans = [SensorPlan(reboot=p.reboot, silent=None, fault=None) for p in plans]
            self._plans[block] = plans
        return plans

    def _block_of(self, t: Instant) -> int:
        return max(0, (t - self.config.start) // self._block_ms)

    def _plan_getter(self, index: int) -> Callable[[Instant], tuple[SensorPlan, Instant]]:
        def plan_at(t: Instant) -> tuple[SensorPlan, Instant]:
            block = self._block_of(t)
            end = self.config.start + (block + 1) * self._block_ms
            return self._block_plans(block)[index], end

        return plan_at

    def _blocker(self, index: int) -> Callable[[Instant, Instant], list[Interval]]:
        def blocked(lo: Instant, hi: Instant) -> list[Interval]:
            out: list[Interval] = []
            first = self._block_of(lo - BLOCK_MARGIN_MS)
            last = self._block_of(hi + BLOCK_MARGIN_MS)
            for block in range(first, last + 1):
                plan = self._block_plans(block)[index]
                for span in (plan.silent, plan.fault):
                    if span is None:
                        continue
                    wide = Interval(span.start - BLOCK_MARGIN_MS, span.end + BLOCK_MARGIN_MS)
                    if wide.start < hi and lo < wide.end:
                        out.append(wide)
            out.sort(key=lambda iv: iv.start)
            return out

        return blocked

    # -- running ------------------------------------------------------------------------------

    def advance(self, until: Instant) -> tuple[list[SerialEmission], list[BleEmission]]:
        """Everything the sensors send in [now, until), each list in time order."""
        serial_out: list[SerialEmission] = []
        ble_out: list[BleEmission] = []
        if until <= self.now:
            return serial_out, ble_out
        for bay in self.bays:
            bay.extend_to(until)
        faults = self.config.faults
        for info, model in zip(self.sensors, self._models, strict=True):
            rng = self._wire_rngs[info.index]
            frames = model.run(until)
            if info.transport == "serial":
                port = info.port
                assert port is not None
                serial_out.extend(
                    serial_emission(
                        frame,
                        sensor_id=info.sensor_id,
                        port=port,
                        lower_hex=model.lower_hex,
                        rng=rng,
                        faults=faults,
                    )
                    for frame in frames
                )
            else:
                address, ble_serial = info.address, info.ble_serial
                assert address is not None
                assert ble_serial is not None
                for frame in frames:
                    ble_out.extend(
                        ble_emissions(
                            frame,
                            serial=ble_serial,
                            address=address,
                            rssi_base=self._rssi[info.index],
                            rng=rng,
                            faults=faults,
                        )
                    )
        serial_out.sort(key=lambda e: (e.t, e.frame.sensor))
        ble_out.sort(key=lambda e: (e.t, e.address))
        self.now = until
        return serial_out, ble_out

    # -- ground truth -------------------------------------------------------------------------

    def truth(self, end: Instant) -> Truth:
        """Ground truth of [start, end)."""
        start = self.config.start
        for bay in self.bays:
            bay.extend_to(end)
        sessions: list[TruthSession] = []
        for info, bay in zip(self.sensors, self.bays, strict=True):
            for s in bay.sessions:
                if s.arrival >= end:
                    break
                departure = s.departure if s.departure < end else None
                sessions.append(TruthSession(info.bay_id, info.sensor_id, s.arrival, departure))
        sessions.sort(key=lambda s: (s.arrival, s.bay_id))
        silent: list[TruthSpan] = []
        faults: list[TruthSpan] = []
        reboots: list[TruthReboot] = []
        for block in range(self._block_of(end - 1) + 1):
            for info, plan in zip(self.sensors, self._block_plans(block), strict=True):
                if plan.silent is not None and plan.silent.start < end:
                    silent.append(
                        TruthSpan(info.sensor_id, plan.silent.start, min(plan.silent.end, end))
                    )
                if plan.fault is not None and plan.fault.start < end:
                    faults.append(
                        TruthSpan(info.sensor_id, plan.fault.start, min(plan.fault.end, end))
                    )
                if plan.reboot is not None and plan.reboot.start < end:
                    reboots.append(TruthReboot(info.sensor_id, plan.reboot.start))
        return Truth(
            scenario=self.config.scenario,
            seed=self.config.seed,
            gateway_id=self.config.gateway_id,
            start=start,
            end=end,
            sensors=[
                TruthSensor(s.sensor_id, s.bay_id, s.zone_id, s.src, s.transport, s.address)
                for s in self.sensors
            ],
            sessions=sessions,
            silent=sorted(silent, key=lambda s: (s.start, s.sensor_id)),
            faults=sorted(faults, key=lambda s: (s.start, s.sensor_id)),
            reboots=sorted(reboots, key=lambda r: (r.at, r.sensor_id)),
        )


def default_layout(serial: int, ble: int) -> list[BaySpec]:
    """``S-000001`` on ``SIM-BAY-0001`` ..., then BLE sensors; 50 bays a zone."""
    out = []
    for i in range(serial + ble):
        sensor = f"S-{i + 1:06d}" if i < serial else ble_sensor_id(BLE_SERIAL_BASE + i + 1)
        out.append(BaySpec(f"SIM-BAY-{i + 1:04d}", sensor, f"SIM-Z{i // 50 + 1}"))
    return out
