"""site.yml applied for real to throwaway Debian roots, then re-applied with nothing changed."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kerbside.edge.config import load_edge_config
from tests.ansible.conftest import GATEWAY, SITE, Deployment

# The first test waits for the session's deployment (debootstrap on a fresh machine, two
# ansible-playbook runs); the suite-wide 300 s is for single tests.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def test_site_applies_then_reapplies_with_no_change(deployment: Deployment) -> None:
    first, *rest = deployment.runs
    assert first.returncode == 0, first.output[-4000:]
    assert set(first.recap) >= {"kerbside-server", "gw-test-a", "localhost"}
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in first.recap.values())
    assert first.recap["kerbside-server"]["changed"] > 0
    assert first.recap["gw-test-a"]["changed"] > 0
    assert rest, "the second run did not happen"
    second = rest[0]
    assert second.returncode == 0, second.output[-4000:]
    assert {host: r["changed"] for host, r in second.recap.items()} == dict.fromkeys(
        first.recap, 0
    ), second.output[-4000:]


def _applied(deployment: Deployment) -> Deployment:
    assert deployment.applied, "site.yml did not apply"
    return deployment


def test_units_are_enabled_by_their_wants_links(deployment: Deployment) -> None:
    dep = _applied(deployment)
    gw = dep.gateway.path("/etc/systemd/system")
    server = dep.server.path("/etc/systemd/system")
    # systemctl enable (offline, in the root) writes absolute links into the wants/ dirs.
    link = gw / "multi-user.target.wants/kerbside-edge.service"
    assert os.readlink(link) == "/etc/systemd/system/kerbside-edge.service"
    for unit in ("systemd-time-wait-sync.service", "systemd-timesyncd.service"):
        assert (gw / "sysinit.target.wants" / unit).is_symlink(), unit
    assert (server / "multi-user.target.wants/kerbside-collector.service").is_symlink()
    assert (server / "multi-user.target.wants/mosquitto.service").is_symlink()


def _group_members(root: Path, group: str) -> list[str]:
    for line in (root / "etc/group").read_text().splitlines():
        name, _, _, members = line.split(":")
        if name == group:
            return members.split(",") if members else []
    raise AssertionError(f"no group {group}")


def test_system_users_and_groups(deployment: Deployment) -> None:
    dep = _applied(deployment)
    for target in (dep.gateway, dep.server):
        users = {
            line.split(":")[0]: line.split(":")
            for line in target.path("/etc/passwd").read_text().splitlines()
        }
        assert "kerbside" in users, target.name
        assert users["kerbside"][6] == "/usr/sbin/nologin"
        assert int(users["kerbside"][2]) < 1000  # a system account
    assert "kerbside" in _group_members(dep.gateway.root, "dialout")
    assert "kerbside" in _group_members(dep.gateway.root, "bluetooth")


def test_edge_config_is_the_site_files_for_that_gateway(deployment: Deployment) -> None:
    dep = _applied(deployment)
    printed = subprocess.run(
        [
            str(Path(sys.executable).parent / "kerbside"),
            "site",
            "edge-config",
            str(dep.site_file),
            "--gateway",
            GATEWAY,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = yaml.safe_load(printed)
    written_path = dep.gateway.path("/etc/kerbside/edge.yaml")
    written = yaml.safe_load(written_path.read_text())
    assert written["gateway_id"] == expected["gateway_id"] == GATEWAY
    assert written["sensors"] == expected["sensors"]
    assert [s["id"] for s in written["sensors"]] == [
        bay["sensor"] for bay in SITE["bays"] if bay["gateway"] == GATEWAY
    ]
    # Deployment keys the role sets; and the agent's own loader accepts the file.
    assert written["mqtt"]["username"] == GATEWAY
    assert written["mqtt"]["port"] == dep.ports["tls"]
    assert written["mqtt"]["tls"] == {"ca": "/etc/kerbside/ca.pem"}
    assert written["serial"] == [{"port": "/dev/kerbside/row-a", "baudrate": 115200}]
    assert written["outbox"]["path"] == "/var/lib/kerbside/outbox.db"
    config = load_edge_config(written_path)
    assert config.gateway_id == GATEWAY
    password = dep.gateway.path("/etc/kerbside/mqtt.pass")
    assert password.read_text().strip() == "pw-a-test-only"
    assert stat.S_IMODE(password.stat().st_mode) == 0o640


def test_installed_commands_run_on_the_targets(deployment: Deployment) -> None:
    dep = _applied(deployment)
    edge = dep.gateway.run("/opt/kerbside/venv/bin/kerbside-edge", "--help")
    assert edge.returncode == 0, edge.stderr
    assert "kerbside-edge run --config" in edge.stdout
    collector = dep.server.run("/opt/kerbside/venv/bin/kerbside-collector", "--help")
    assert collector.returncode == 0, collector.stderr
    # The gateway's venv has the edge extra only: no collector dependencies on a Pi.
    probe = dep.gateway.run("/opt/kerbside/venv/bin/python", "-c", "import fastapi")
    assert probe.returncode != 0


def test_units_verify_and_are_hardened(deployment: Deployment) -> None:
    dep = _applied(deployment)
    unit = dep.gateway.path("/etc/systemd/system/kerbside-edge.service").read_text()
    for line in (
        "Type=notify",  # the agent sends READY=1, and WATCHDOG=1 from its event loop
        "WatchdogSec=60",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",  # a config mistake is not retried every 5 s
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/kerbside",
        "User=kerbside",
        "Wants=network-online.target time-sync.target",
        "After=network-online.target time-sync.target",
        "ExecStart=/opt/kerbside/venv/bin/kerbside-edge run --config /etc/kerbside/edge.yaml",
    ):
        assert line in unit.splitlines(), line
    assert [ln for ln in unit.splitlines() if ln.startswith("ReadWritePaths=")] == [
        "ReadWritePaths=/var/lib/kerbside"
    ]
    collector_unit = dep.server.path("/etc/systemd/system/kerbside-collector.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=120",
        "Restart=on-failure",
        "RestartSec=5",
        "LimitNOFILE=65536",
    ):
        assert line in collector_unit.splitlines(), line
    for target, name in ((dep.gateway, "kerbside-edge"), (dep.server, "kerbside-collector")):
        verify = target.run("systemd-analyze", "verify", f"/etc/systemd/system/{name}.service")
        assert verify.returncode == 0, verify.stderr
    journald = dep.gateway.path("/etc/systemd/journald.conf.d/kerbside.conf").read_text()
    assert "SystemMaxUse=64M" in journald
    udev = dep.gateway.path("/etc/udev/rules.d/70-kerbside-serial.rules").read_text()
    assert 'ATTRS{serial}=="KBS-T1"' in udev
    assert 'SYMLINK+="kerbside/row-a"' in udev


def test_collector_gets_config_site_and_token_hashes_only(deployment: Deployment) -> None:
    dep = _applied(deployment)
    config = yaml.safe_load(dep.server.path("/etc/kerbside/collector.yaml").read_text())
    assert config["site"] == "/etc/kerbside/site.yaml"
    assert config["mqtt"]["username"] == "collector"
    assert config["mqtt"]["port"] == dep.ports["local"]
    assert yaml.safe_load(dep.server.path("/etc/kerbside/site.yaml").read_text()) == SITE
    tokens_text = dep.server.path("/etc/kerbside/tokens.yaml").read_text()
    assert "officer-token-test-only" not in tokens_text
    assert yaml.safe_load(tokens_text) == [
        {
            "name": "pc-1234",
            "role": "officer",
            "sha256": hashlib.sha256(b"officer-token-test-only").hexdigest(),
        },
        {"name": "ops", "role": "admin", "sha256": "ab" * 32},
    ]
    passwd = dep.server.path("/etc/mosquitto/kerbside/passwd").read_text()
    assert "pw-a-test-only" not in passwd
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == sorted(
        ["collector", GATEWAY, "gw-test-b"]
    )
