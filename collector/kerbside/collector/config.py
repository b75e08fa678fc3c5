"""The collector's config file (docs/operations.md), validated with pydantic; and checking one
for every mistake at once, the site file and the other files it names included."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kerbside.core.checks import (
    ConfigFileError,
    Loc,
    Need,
    Problem,
    file_problems,
    model_problems,
    read_yaml,
)


class _Model(BaseModel):
    # no .inf or .nan, and an upper bound on every number: durations become whole milliseconds,
    # which a huge number overflows, and counts go to SQLite, whose integers have 64 bits
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TlsConfig(_Model):
    ca: Path


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    topic_root: str = "kerbside/v1"
    client_id: str = "kerbside-collector"
    # How long the broker keeps our subscriptions and queued messages while we are away.
    # MQTT carries these as 32- and 16-bit numbers
    session_expiry_s: int = Field(default=7 * 86_400, ge=0, le=0xFFFFFFFF)
    keepalive_s: int = Field(default=30, ge=5, le=0xFFFF)
    # Unacknowledged QoS 1 messages the broker may send us. Twice ingest.batch_max's default, so
    # that the broker sends a whole next batch while one is committed (acks come after commit).
    receive_maximum: int = Field(default=4000, ge=1, le=65535)
    # "3.1.1" for brokers without MQTT 5 (the demo's embedded amqtt): a persistent session
    # (clean_session False) instead of a session expiry; receive_maximum does not apply.
    protocol: Literal["5", "3.1.1"] = "5"
    # Several collectors: the gateways' events reach one collector of the group each, through
    # the broker's shared subscription ``$share/<group>/<topic_root>/gw/+/events``.
    shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


DEFAULT_STORE_PATH = Path("/var/lib/kerbside/collector.db")


class StoreConfig(_Model):
    """SQLite in one file (``path``, the default) or PostgreSQL (``url``), never both."""

    path: Path = DEFAULT_STORE_PATH
    # postgresql://user@host:port/database; the password, if any, in password_file (a password
    # written into the URL works too, but the file keeps it out of the config).
    url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    password_file: Path | None = None
    # Events and closed sessions older than this are pruned (0 keeps everything, so ten years
    # is bound enough).
    retention_days: float = Field(default=90, ge=0, le=3650)

    @model_validator(mode="after")
    def _one_store(self) -> StoreConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("give either path (SQLite) or url (PostgreSQL), not both")
        if self.password_file is not None and self.url is None:
            raise ValueError("password_file is for a PostgreSQL store (url)")
        return self


class ClusterConfig(_Model):
    """Several collectors on one PostgreSQL store, each zone's rules on one of them."""

    node_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # unique per process
    lease_s: float = Field(default=10, gt=0, le=3600)


class InfluxConfig(_Model):
    url: str
    api: Literal["v1", "v2"] = "v2"
    token_file: Path | None = None
    org: str | None = None
    bucket: str | None = None
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password_file: Path | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)  # InfluxDB advises 5,000 lines
    # once points stop coming, how long the last of them wait for more (a steady stream is sent
    # at least every second, a backlog in full batches)
    flush_interval_ms: int = Field(default=100, ge=10, le=60_000)
    spool_path: Path | None = None  # not used by `run` (the store holds the spool); tools only
    # beyond it the oldest are dropped
    spool_max_points: int = Field(default=2_000_000, ge=1000, le=1_000_000_000)
    timeout_s: float = Field(default=10, gt=0, le=600)  # per HTTP write

    @model_validator(mode="after")
    def _needs_destination(self) -> InfluxConfig:
        wanted = ("token_file", "org", "bucket") if self.api == "v2" else ("database",)
        for key in wanted:
            if getattr(self, key) is None:
                raise ValueError(f"{key} is required with api {self.api}")
        return self


class HttpConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Where people reach the API (behind a TLS proxy: https://kerbside.example.gov.uk); the base
    # of officers' sign-in links. Unset: the address a request came to.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    # Addresses or networks of reverse proxies whose X-Forwarded-Proto and X-Forwarded-For are
    # believed (so a cookie set behind a TLS proxy is Secure). Empty: no proxy is believed.
    trusted_proxies: list[str] = []
    # How long an officer's sign-in lasts (a shift), and how long a sign-in link waits.
    session_hours: float = Field(default=12, gt=0, le=24 * 31)
    signin_link_minutes: float = Field(default=15, gt=0, le=7 * 24 * 60)
    # Open connections at most (officers' alert streams included; fewer if the process may not
    # open that many files), and how long a client has to send a request's head (line and
    # headers) once it starts one: clients that hold connections without asking cannot lock
    # the others out (docs/operations.md, security model).
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    header_timeout_s: float = Field(default=10, gt=0, le=600)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, proxies: list[str]) -> list[str]:
        out = []
        for proxy in proxies:
            try:
                out.append(str(ipaddress.ip_network(proxy, strict=False)))
            except ValueError as exc:
                raise ValueError(f"{proxy!r} is not an IP address or network") from exc
        return out


class MaintenanceConfig(_Model):
    # A gateway silent for more than 30 days is long gone; a sensor reports its battery in
    # 16 bits.
    gateway_offline_after_s: float = Field(default=300, gt=0, le=30 * 86_400)
    low_battery_mv: int = Field(default=3300, ge=0, le=65535)


class IngestConfig(_Model):
    # Messages per unit of work at most (a backlog's batches are full). A commit writes every
    # page its rows touch, and each bay's rows sit apart in the tables' indexes, so a bigger
    # batch writes fewer pages per event (a 200,000-event backlog on SQLite, 1,000 -> 2,000:
    # CPU per event 45-47 -> 40-41 us, 22,600-23,700 -> 25,100-25,600 events/s).
    batch_max: int = Field(default=2000, ge=1, le=100_000)


class CollectorConfig(_Model):
    site: Path
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    influxdb: InfluxConfig | None = None
    http: HttpConfig | None = HttpConfig()
    tokens_file: Path | None = None
    # events wait this long for late ones; an hour is far beyond any link's delay
    alert_delay_s: float = Field(default=15, ge=0, le=3600)
    maintenance: MaintenanceConfig = MaintenanceConfig()
    journal_file: Path | None = None
    ingest: IngestConfig = IngestConfig()
    cluster: ClusterConfig | None = None

    @field_validator("cluster")
    @classmethod
    def _cluster_on_postgres(
        cls, cluster: ClusterConfig | None, info: ValidationInfo
    ) -> ClusterConfig | None:
        store = info.data.get("store")
        if cluster is not None and isinstance(store, StoreConfig) and store.url is None:
            raise ValueError(
                "needs a PostgreSQL store (store.url): a SQLite file serves one collector"
            )
        mqtt = info.data.get("mqtt")
        if cluster is not None and isinstance(mqtt, MqttConfig) and mqtt.shared_group is None:
            raise ValueError(
                "needs mqtt.shared_group: without it every collector would take every event"
            )
        return cluster


# Files the collector reads, and those it creates (their directories included).
_FILES: tuple[tuple[Loc, Need], ...] = (
    (("site",), "read"),
    (("mqtt", "password_file"), "read"),
    (("mqtt", "tls", "ca"), "read"),
    (("influxdb", "token_file"), "read"),
    (("influxdb", "password_file"), "read"),
    (("journal_file",), "read"),
    (("store", "path"), "write-dir"),
    (("store", "password_file"), "read"),
    (("influxdb", "spool_path"), "write-dir"),
)


def check_config(
    path: str | Path, *, site: bool = True
) -> tuple[CollectorConfig | None, list[Problem], list[str]]:
    """Every mistake in a collector config and in the site file it names (``kerbside-collector
    check``, and ``run`` before it starts): (the config or None, the config's problems, the
    site file's problems rendered with its own name and lines)."""
    from kerbside.core.site import check_site_file  # noqa: PLC0415

    doc = read_yaml(path)
    base = Path(path).resolve().parent
    model, problems = model_problems(doc, CollectorConfig)
    problems += file_problems(doc, _FILES, base=base)
    tokens = doc.data.get("tokens_file") if isinstance(doc.data, dict) else None
    if isinstance(tokens, str) and (base / tokens).exists():  # a missing one holds no tokens
        problems += file_problems(doc, [(("tokens_file",), "read")], base=base)
    site_lines: list[str] = []
    site_file = doc.data.get("site") if isinstance(doc.data, dict) else None
    site_errors = False
    if site and isinstance(site_file, str) and (base / site_file).is_file():
        _, site_problems = check_site_file(base / site_file)
        site_errors = any(not p.warning for p in site_problems)
        site_lines = [p.render(base / site_file) for p in site_problems]
    if model is None or site_errors or any(not p.warning for p in problems):
        return None, problems, site_lines
    return _resolved(model, path), problems, site_lines


def load_config(path: str | Path) -> CollectorConfig:
    """Read a collector config (not the files it names); relative paths in it are taken
    relative to the file. Raises ConfigFileError listing every mistake."""
    doc = read_yaml(path)
    config, problems = model_problems(doc, CollectorConfig)
    if config is None:
        raise ConfigFileError(path, problems)
    return _resolved(config, path)


def _resolved(config: CollectorConfig, path: str | Path) -> CollectorConfig:
    base = Path(path).resolve().parent

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    updates: dict[str, object] = {"site": rel(config.site)}
    store: dict[str, object] = {"path": rel(config.store.path)}
    if config.store.password_file is not None:
        store["password_file"] = rel(config.store.password_file)
    updates["store"] = config.store.model_copy(update=store)
    if config.tokens_file is not None:
        updates["tokens_file"] = rel(config.tokens_file)
    if config.journal_file is not None:
        updates["journal_file"] = rel(config.journal_file)
    if config.influxdb is not None:
        influx: dict[str, object] = {}
        for key in ("token_file", "password_file", "spool_path"):
            value = getattr(config.influxdb, key)
            if value is not None:
                influx[key] = rel(value)
        updates["influxdb"] = config.influxdb.model_copy(update=influx)
    if config.mqtt.password_file is not None or config.mqtt.tls is not None:
        mqtt_updates: dict[str, object] = {}
        if config.mqtt.password_file is not None:
            mqtt_updates["password_file"] = rel(config.mqtt.password_file)
        if config.mqtt.tls is not None:
            mqtt_updates["tls"] = TlsConfig(ca=rel(config.mqtt.tls.ca))
        updates["mqtt"] = config.mqtt.model_copy(update=mqtt_updates)
    return config.model_copy(update=updates)
