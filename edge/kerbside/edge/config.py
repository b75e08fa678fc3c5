"""The edge agent's config file (docs/gateway.md), and checking one for every mistake at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from kerbside.core.checks import (
    ConfigFileError,
    Loc,
    Need,
    Problem,
    YamlFile,
    duplicate_problems,
    file_problems,
    model_problems,
    read_yaml,
)

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
SensorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class _Strict(BaseModel):
    # no .inf or .nan, and an upper bound on every number: durations become whole milliseconds
    # and sizes whole bytes, which a huge number overflows
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TlsConfig(_Strict):
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False


class MqttConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None  # defaults to gateway_id: the broker's ACL keys on it
    password_file: Path | None = None
    tls: TlsConfig | None = None
    topic_root: str = "kerbside/v1"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30


class OutboxConfig(_Strict):
    path: Path = Path("/var/lib/kerbside/outbox.db")
    max_mb: Annotated[float, Field(gt=0, le=1_048_576)] = 256  # 1 TiB: more than any gateway's disk


class DetectorConfig(_Strict):
    # A change held back for more than an hour is no longer news, and a sensor silent for a day
    # is dead (it sends a keep-alive at least once a minute).
    confirm_occupied_s: Annotated[float, Field(ge=0, le=3600)] = 10
    confirm_vacant_s: Annotated[float, Field(ge=0, le=3600)] = 10
    silence_s: Annotated[float, Field(gt=0, le=86_400)] = 900


class ClockConfig(_Strict):
    require_sync: bool = True


class SerialPortConfig(_Strict):
    port: str
    baudrate: Annotated[int, Field(gt=0, le=12_000_000)] = 115200  # the fastest USB serial chips


class BleConfig(_Strict):
    enabled: bool = False
    company_id: Annotated[int, Field(ge=0, le=0xFFFF)] = 0xFFFF
    adapter: str = "hci0"
    backend: str | None = None  # dotted path of a bleak backend class; None is the platform's own
    # restart a scan that hears nothing this long
    watchdog_s: Annotated[float, Field(gt=0, le=3600)] = 60


class SensorConfig(_Strict):
    id: SensorId
    bay: Id


class EdgeConfig(_Strict):
    gateway_id: Id
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    detector: DetectorConfig = DetectorConfig()
    health_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60
    clock: ClockConfig = ClockConfig()
    serial: list[SerialPortConfig] = []
    ble: BleConfig = BleConfig()
    sensors: list[SensorConfig] = []

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.gateway_id

    @property
    def bay_of_sensor(self) -> dict[str, str]:
        return {sensor.id: sensor.bay for sensor in self.sensors}


# Files the agent reads, and the outbox it creates (its directory included).
_FILES: tuple[tuple[Loc, Need], ...] = (
    (("mqtt", "password_file"), "read"),
    (("mqtt", "tls", "ca"), "read"),
    (("mqtt", "tls", "cert"), "read"),
    (("mqtt", "tls", "key"), "read"),
    (("outbox", "path"), "write-dir"),
)


def _problems(doc: YamlFile, *, files: bool) -> tuple[EdgeConfig | None, list[Problem]]:
    config, problems = model_problems(doc, EdgeConfig)
    problems += duplicate_problems(doc, "sensors", "id")
    problems += duplicate_problems(doc, "serial", "port")
    if files:
        problems += file_problems(doc, _FILES)
        problems += _serial_warnings(doc)
    return config, problems


def _serial_warnings(doc: YamlFile) -> list[Problem]:
    ports = doc.data.get("serial") if isinstance(doc.data, dict) else None
    out = []
    for index, entry in enumerate(ports if isinstance(ports, list) else []):
        port = entry.get("port") if isinstance(entry, dict) else None
        if isinstance(port, str) and not Path(port).exists():
            loc: Loc = ("serial", index, "port")
            words = f"{port} does not exist (yet): the agent waits for it and says so in its log"
            out.append(Problem(f"serial[{index}].port", words, doc.line_of(loc), warning=True))
    return out


def check_edge_config(path: str | Path) -> tuple[EdgeConfig | None, list[Problem]]:
    """Every mistake in an edge config, the files it names included (``kerbside-edge check``,
    and ``run`` before it starts): (the config or None, problems; warnings among them)."""
    doc = read_yaml(path)
    config, problems = _problems(doc, files=True)
    return (config if not any(not p.warning for p in problems) else None), problems


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Load and validate an edge config file (not the files it names: replay and the tools
    need none of them); raises ConfigFileError listing every mistake."""
    doc = read_yaml(path)
    config, problems = _problems(doc, files=False)
    if problems or config is None:
        raise ConfigFileError(path, problems)
    return config
