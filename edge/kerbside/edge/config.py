"""The edge agent's config file (SPEC section 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kerbside.core.config import load_yaml_model

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
SensorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    max_mb: Annotated[float, Field(gt=0)] = 256


class DetectorConfig(_Strict):
    confirm_occupied_s: Annotated[float, Field(ge=0)] = 10
    confirm_vacant_s: Annotated[float, Field(ge=0)] = 10
    silence_s: Annotated[float, Field(gt=0)] = 900


class ClockConfig(_Strict):
    require_sync: bool = True


class SerialPortConfig(_Strict):
    port: str
    baudrate: Annotated[int, Field(gt=0)] = 115200


class BleConfig(_Strict):
    enabled: bool = False
    company_id: Annotated[int, Field(ge=0, le=0xFFFF)] = 0xFFFF
    adapter: str = "hci0"
    backend: str | None = None  # dotted path of a bleak backend class; None is the platform's own
    watchdog_s: Annotated[float, Field(gt=0)] = 60  # restart a scan that hears nothing this long


class SensorConfig(_Strict):
    id: SensorId
    bay: Id


class EdgeConfig(_Strict):
    gateway_id: Id
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    detector: DetectorConfig = DetectorConfig()
    health_interval_s: Annotated[float, Field(gt=0)] = 60
    clock: ClockConfig = ClockConfig()
    serial: list[SerialPortConfig] = []
    ble: BleConfig = BleConfig()
    sensors: list[SensorConfig] = []

    @model_validator(mode="after")
    def _unique_sensors(self) -> EdgeConfig:
        seen: set[str] = set()
        for sensor in self.sensors:
            if sensor.id in seen:
                raise ValueError(f"sensors: sensor {sensor.id} is listed twice")
            seen.add(sensor.id)
        return self

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.gateway_id

    @property
    def bay_of_sensor(self) -> dict[str, str]:
        return {sensor.id: sensor.bay for sensor in self.sensors}


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Load and validate an edge config file; raises ConfigError with a one-line message."""
    return load_yaml_model(path, EdgeConfig)
