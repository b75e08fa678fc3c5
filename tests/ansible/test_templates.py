"""The collector role's templates rendered by Ansible: its optional InfluxDB and TLS proxy
settings (loaded by the collector's own config loader; the deployment test runs without
InfluxDB), its Grafana provisioning (the role's own tasks, run into a stand-in Grafana
directory), and its unit's open-file limit (a real collector under that limit and under
systemd's default)."""

from __future__ import annotations

import grp
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kerbside.collector.config import load_config
from tests import grafana as grafana_dashboard
from tests.ansible.conftest import ANSIBLE_DIR, ansible, play_on_localhost, render_role_templates
from tests.helpers import Mosquitto, free_port, stop_process, wait_for_port, write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ROLE = ANSIBLE_DIR / "roles" / "kerbside_collector"


def render(tmp_path: Path, influx: dict[str, object], **more: object) -> Path:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables["kerbside_collector_influxdb"] = influx
    variables.update(more)
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    dest = tmp_path / "collector.yaml"
    proc = ansible(
        "ansible",
        "localhost",
        "-c",
        "local",
        "-m",
        "ansible.builtin.template",
        "-a",
        f"src={ROLE / 'templates' / 'collector.yaml.j2'} dest={dest}",
        "-e",
        f"@{tmp_path / 'vars.yml'}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


@pytest.mark.parametrize(
    ("influx", "expected"),
    [
        (
            {
                "url": "http://127.0.0.1:8086",
                "api": "v2",
                "org": "camden",
                "bucket": "parking",
                "token": "secret",
            },
            {
                "api": "v2",
                "org": "camden",
                "bucket": "parking",
                "token_file": Path("/etc/kerbside/influx.token"),
            },
        ),
        (
            {
                "url": "http://127.0.0.1:8086",
                "api": "v1",
                "database": "parking",
                "retention_policy": "autogen",
                "username": "kerbside",
                "password": "secret",
            },
            {
                "api": "v1",
                "database": "parking",
                "retention_policy": "autogen",
                "username": "kerbside",
                "password_file": Path("/etc/kerbside/influx.pass"),
            },
        ),
    ],
)
def test_influxdb_settings_render_to_a_valid_collector_config(
    tmp_path: Path, influx: dict[str, object], expected: dict[str, object]
) -> None:
    path = render(tmp_path, influx)
    assert "secret" not in path.read_text()  # secrets go to files of their own
    config = load_config(path)
    assert config.influxdb is not None
    assert str(config.influxdb.url) == "http://127.0.0.1:8086"
    for key, value in expected.items():
        assert getattr(config.influxdb, key) == value, key
    # the spool is the store's: points go in with the batch they come from
    assert config.influxdb.spool_path is None


def test_without_influxdb_the_collector_config_has_none(tmp_path: Path) -> None:
    assert load_config(render(tmp_path, {})).influxdb is None


def test_the_tls_proxy_settings_render(tmp_path: Path) -> None:
    http = load_config(render(tmp_path, {})).http
    assert http is not None
    assert (http.trusted_proxies, http.public_url) == (["127.0.0.1/32", "::1/128"], None)
    url = "https://kerbside.example.gov.uk"
    http = load_config(render(tmp_path, {}, kerbside_collector_public_url=url)).http
    assert http is not None
    assert http.public_url == url


def test_several_collectors_on_postgresql_render_and_pass_the_collectors_check(
    tmp_path: Path,
) -> None:
    """A PostgreSQL store with its password file, a node id and lease, the events' shared group:
    the rendered config passes ``kerbside-collector check`` with the files the role writes."""
    etc = tmp_path / "etc"
    etc.mkdir()
    write_collector_setup(etc, port=1883, topic_root="t")  # a valid site.yaml
    for name in ("mqtt.pass", "store.pass"):
        (etc / name).write_text("secret\n")
    (etc / "tokens.yaml").write_text("[]\n")
    url = "postgresql://kerbside@db.internal:5432/kerbside"
    path = render(
        tmp_path,
        {},
        kerbside_collector_config_dir=str(etc),
        kerbside_collector_store_url=url,
        kerbside_collector_store_password="secret",
        kerbside_collector_node_id="collector-b",
        kerbside_collector_lease_s=15,
    )
    assert "secret" not in path.read_text()
    checked = subprocess.run(
        [sys.executable, "-m", "kerbside.collector.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "store postgresql://kerbside@db.internal:5432/kerbside" in checked.stdout
    assert "cluster node collector-b" in checked.stdout
    config = load_config(path)
    assert config.store.url == url
    assert config.store.password_file == etc / "store.pass"
    assert config.cluster is not None
    assert (config.cluster.node_id, config.cluster.lease_s) == ("collector-b", 15)
    assert config.mqtt.shared_group == "kerbside"
    # alone (no node id): no cluster, no shared group; SQLite unless a URL is given
    alone = load_config(render(tmp_path, {}))
    assert (alone.cluster, alone.mqtt.shared_group, alone.store.url) == (None, None, None)


# -- Grafana: the role's own provisioning tasks, run on this machine into a stand-in Grafana ----


def provision_grafana(
    tmp_path: Path, influx: dict[str, object], grafana: dict[str, object]
) -> Path:
    """Run the collector role's Grafana tasks (its defaults, vars, templates and handlers) on
    localhost, with Grafana's directories under ``tmp_path``; returns that root."""
    root = tmp_path / "grafana"
    (root / "provisioning" / "datasources").mkdir(parents=True)
    (root / "provisioning" / "dashboards").mkdir(parents=True)
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: t\ntimezone: Europe/Paris\nzones:\n  - {id: Z, name: Z, controlled_hours: any}\n"
        "bays:\n  - {id: B1, zone: Z, kind: free, sensor: S1, gateway: g}\n"
    )
    variables = {
        "ansible_python_interpreter": sys.executable,
        "kerbside_collector_start": False,
        "kerbside_collector_site_file": str(site),
        "kerbside_collector_influxdb": influx,
        "kerbside_collector_grafana": {
            "provisioning_dir": str(root / "provisioning"),
            "dashboards_dir": str(root / "dashboards" / "kerbside"),
            "group": grp.getgrgid(os.getgid()).gr_name,
            **grafana,
        },
    }
    include = {"name": "kerbside_collector", "tasks_from": "grafana.yml"}
    play_on_localhost(tmp_path, variables, [{"ansible.builtin.include_role": include}])
    return root


def test_grafana_gets_the_dashboard_its_provider_and_an_influxql_data_source(
    tmp_path: Path,
) -> None:
    root = provision_grafana(
        tmp_path,
        {"url": "http://127.0.0.1:8086", "api": "v2", "org": "o", "bucket": "parking",
         "token": "write-token"},
        {"influxdb": {"token": "read-only-token"}},
    )  # fmt: skip
    datasource_file = root / "provisioning" / "datasources" / "kerbside.yaml"
    assert stat.S_IMODE(datasource_file.stat().st_mode) == 0o640  # it holds a token
    (source,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert source["type"] == "influxdb"
    assert source["url"] == "http://127.0.0.1:8086"
    assert source["jsonData"]["dbName"] == source["database"] == "kerbside"  # the DBRP mapping
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"] == {"httpHeaderValue1": "Token read-only-token"}
    (provider,) = yaml.safe_load(
        (root / "provisioning" / "dashboards" / "kerbside.yaml").read_text()
    )["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Kerbside"
    dashboard_dir = Path(provider["options"]["path"])
    assert dashboard_dir == root / "dashboards" / "kerbside"
    dashboard = json.loads((dashboard_dir / "kerbside.json").read_text())
    shipped = grafana_dashboard.load()
    assert dashboard["timezone"] == "Europe/Paris"  # the site's
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]
    # Otherwise the dashboard as shipped: every query checked against what the collector writes.
    for board in (dashboard, shipped):
        board.pop("timezone")
        for v in board["templating"]["list"]:
            if v["type"] == "datasource":
                v.pop("current")
    assert dashboard == shipped
    assert all(grafana_dashboard.check(t.query) == [] for t in grafana_dashboard.targets(dashboard))


def test_grafana_reads_influxdb_1x_with_the_collectors_database_and_user(tmp_path: Path) -> None:
    root = provision_grafana(
        tmp_path,
        {"url": "http://influx.internal:8086", "api": "v1", "database": "parking",
         "username": "kerbside", "password": "pw"},
        {},
    )  # fmt: skip
    (source,) = yaml.safe_load(
        (root / "provisioning" / "datasources" / "kerbside.yaml").read_text()
    )["datasources"]
    assert (source["url"], source["database"], source["user"]) == (
        "http://influx.internal:8086",
        "parking",
        "kerbside",
    )
    assert source["jsonData"] == {"dbName": "parking", "httpMode": "POST"}
    assert source["secureJsonData"] == {"password": "pw"}


# -- the collector's unit: its open-file limit, under load ---------------------------------------


LIMITED = "HTTP connections limited to"


@dataclass
class UnderLoad:
    answered: bool  # /healthz was answered with 1,500 connections held
    limited: bool  # the collector said its open-file limit holds it below http.max_connections
    still_open: int  # the held connections the collector had not closed when it answered


def collector_under_load(
    workdir: Path, broker_port: int, nofile: int, connections: int
) -> UnderLoad:
    """Start ``kerbside-collector run`` with ``nofile`` open files allowed and room for
    ``connections`` (http.max_connections), open that many idle HTTP connections to it, then ask
    it ``/healthz`` and count the held connections it has not closed to stay within its limit."""
    config = write_collector_setup(workdir, port=broker_port, topic_root="t/nofile")
    http = free_port()
    config.write_text(
        config.read_text().replace(
            "http: null\n",
            f"http: {{host: 127.0.0.1, port: {http}, max_connections: {connections + 100},"
            " header_timeout_s: 600}\n",
        )
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = workdir / "collector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, before exec
            cwd=workdir,
        )
    held: list[socket.socket] = []
    try:
        wait_for_port(http, timeout=30)
        held = [socket.create_connection(("127.0.0.1", http)) for _ in range(connections)]
        probe = socket.create_connection(("127.0.0.1", http))
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n")
        probe.settimeout(60)
        try:
            status = probe.recv(64).split(b" ")[1:2]
        except (TimeoutError, ConnectionError):
            status = []
        finally:
            probe.close()
        answered = status in ([b"200"], [b"503"])  # up, its broker link or not yet
        still_open = 0
        for sock in held:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except BlockingIOError:
                still_open += 1  # nothing to read: the collector keeps it open
            except ConnectionError:
                pass
        return UnderLoad(answered, LIMITED in log.read_text(errors="replace"), still_open)
    finally:
        for sock in held:
            sock.close()
        stop_process(proc, signal.SIGTERM, timeout=15)


def test_collector_unit_lets_it_hold_more_connections_than_systemds_default(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """1,500 open connections (officers' pages each hold an alert stream): with systemd's default
    soft limit of 1,024 open files the collector cannot hold them (it says so, and closes the
    oldest idle ones to keep answering); with its unit's LimitNOFILE (capped by this machine's
    hard limit) it holds them all and answers."""
    unit = tmp_path / "kerbside-collector.service"
    render_role_templates(
        tmp_path, "kerbside_collector", {"kerbside-collector.service.j2": unit}, {}
    )
    limits = [
        ln.split("=", 1)[1] for ln in unit.read_text().splitlines() if ln.startswith("LimitNOFILE=")
    ]
    assert len(limits) == 1, unit.read_text()
    nofile = int(limits[0])
    assert nofile >= 65536
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    usable = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
    assert usable > 2_000, "this machine's hard limit is too low for the test"
    default = collector_under_load(tmp_path / "default", broker.port, 1024, 1500)
    assert default.limited, default
    assert default.still_open < 1024, default
    assert collector_under_load(tmp_path / "unit", broker.port, usable, 1500) == UnderLoad(
        answered=True, limited=False, still_open=1500
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert "LimitNOFILE" not in verify.stderr, verify.stderr
