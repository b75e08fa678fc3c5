"""The collector role's optional InfluxDB settings, rendered by Ansible from the role's template
and loaded by the collector's own config loader (the deployment test runs without InfluxDB)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kerbside.collector.config import load_config
from tests.ansible.conftest import ANSIBLE_DIR, ansible_env

ROLE = ANSIBLE_DIR / "roles" / "kerbside_collector"


def render(tmp_path: Path, influx: dict[str, object]) -> Path:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables["kerbside_collector_influxdb"] = influx
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    dest = tmp_path / "collector.yaml"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-c",
            "local",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={ROLE / 'templates' / 'collector.yaml.j2'} dest={dest}",
            "-e",
            f"@{tmp_path / 'vars.yml'}",
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
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
    assert config.influxdb.spool_path == Path("/var/lib/kerbside/influx-spool.db")


def test_without_influxdb_the_collector_config_has_none(tmp_path: Path) -> None:
    assert load_config(render(tmp_path, {})).influxdb is None
