"""``kerbside-collector check`` (and ``run`` refusing what it refuses) as processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_collector_setup

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

COLLECTOR = [sys.executable, "-m", "kerbside.collector.cli"]


def collector(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COLLECTOR, *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_check_reports_every_mistake_the_site_files_too(tmp_path: Path) -> None:
    write_collector_setup(tmp_path, port=1883, topic_root="t")
    site = tmp_path / "site.yaml"
    site.write_text(site.read_text().replace("kind: paid", "kind: payed", 1))
    config = tmp_path / "collector.yaml"
    config.write_text(
        "site: site.yaml\n"
        "mqtt: {host: 127.0.0.1, port: 0, password_file: nope.pass, protocol: '6'}\n"
        "store: {path: collector.db, retension_days: 30}\n"
        "alert_delay_s: soon\n"
        "http: null\n"
    )
    result = collector("check", "--config", str(config))
    assert result.returncode == 2
    err = result.stderr.splitlines()
    for expected in (
        f"{config}:2: mqtt.port: must be at least 1, not 0",
        f"{config}:2: mqtt.password_file: {tmp_path}/nope.pass does not exist",
        f"{config}:2: mqtt.protocol: must be one of '5' or '3.1.1', not '6'",
        f"{config}:3: store.retension_days: unknown key (did you mean retention_days?)",
        f"{config}:4: alert_delay_s: must be a number, not 'soon'",
        f"{site}:7: bays[0].kind: expected one of",
    ):
        assert any(line.startswith(expected) for line in err), (expected, err)
    assert err[-1] == f"{config}: not usable (errors above)"


def test_check_refuses_numbers_run_could_not_use(tmp_path: Path) -> None:
    config = write_collector_setup(
        tmp_path,
        port=1,
        topic_root="t",
        store="{path: collector.db, retention_days: .inf}",
        extra="maintenance: {gateway_offline_after_s: .nan}\n",
    )
    config.write_text(
        config.read_text().replace("protocol: '5'}", "protocol: '5', keepalive_s: 100000}")
    )
    result = collector("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}:2: mqtt.keepalive_s: must be at most 65535, not 100000",
        f"{config}:3: store.retention_days: must be a finite number, not inf",
        f"{config}:6: maintenance.gateway_offline_after_s: must be a finite number, not nan",
        f"{config}: not usable (errors above)",
    ]


def test_check_refuses_huge_numbers_that_run_would_overflow(tmp_path: Path) -> None:
    # finite, but a millisecond count beyond any integer run can make of it
    config = write_collector_setup(
        tmp_path,
        port=1,
        topic_root="t",
        store="{path: collector.db, retention_days: 1.0e+300}",
        extra="maintenance: {gateway_offline_after_s: 1.0e+306}\n",
    )
    config.write_text(config.read_text().replace("alert_delay_s: 1.0", "alert_delay_s: 1.0e+308"))
    result = collector("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}:3: store.retention_days: must be at most 3650, not 1e+300",
        f"{config}:5: alert_delay_s: must be at most 3600, not 1e+308",
        f"{config}:6: maintenance.gateway_offline_after_s: must be at most 2592000, not 1e+306",
        f"{config}: not usable (errors above)",
    ]


def test_check_passes_a_good_config(tmp_path: Path) -> None:
    config = write_collector_setup(tmp_path, port=1883, topic_root="t")
    result = collector("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok: site {tmp_path}/site.yaml, broker 127.0.0.1")


def test_run_with_a_missing_site_file_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("site: /nowhere/site.yaml\nstore: {path: collector.db}\nhttp: null\n")
    result = collector("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{config}:1: site: /nowhere/site.yaml does not exist"]


def test_a_store_under_a_file_is_named_by_check_and_one_line_for_the_other_commands(
    tmp_path: Path,
) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", store="{path: site.yaml/c.db}")
    store = tmp_path / "site.yaml" / "c.db"
    checked = collector("check", "--config", str(config))
    assert checked.returncode == 2
    assert f"{config}:3: store.path: cannot create {store}: {tmp_path}/site.yaml is a file" in (
        checked.stderr
    )
    for command in ("migrate", "export-journal", "run"):
        done = collector(command, "--config", str(config))
        assert done.returncode != 0, command
        assert "Traceback" not in done.stderr, (command, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (command, done.stderr)


@pytest.mark.parametrize("command", ["migrate", "export-journal"])
def test_a_store_that_is_a_directory_is_one_line_not_a_traceback(
    tmp_path: Path, command: str
) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", store="{path: state}")
    (tmp_path / "state").mkdir()
    done = collector(command, "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"kerbside-collector: {tmp_path}/state: is a directory; give a file name in it"
    ]
    assert done.stdout == ""
