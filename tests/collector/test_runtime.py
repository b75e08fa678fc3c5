"""``kerbside-collector run`` as a process: an invalid site stops it at start; SIGHUP reloads."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kerbside.collector.config import HttpConfig
from kerbside.collector.runtime import ApiPortError, claim_api_address, listen_api
from tests.helpers import (
    Mosquitto,
    free_port,
    start_collector,
    wait_for_log,
    write_collector_setup,
)

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def _run(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kerbside.collector.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_an_invalid_site_stops_the_collector_at_start_with_its_errors(tmp_path: Path) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t")
    site = tmp_path / "site.yaml"
    site.write_text(
        site.read_text()
        .replace("controlled_hours: any", "controlled_hours: sometimes")
        .replace(
            "zone: Z1, street: Test St, kind: paid, max_stay_minutes: 2", "zone: Z9, kind: x", 1
        )
    )
    proc = _run(config)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "zones[0].controlled_hours" in out
    assert "bays[0]" in out


def test_a_bad_config_key_is_named(tmp_path: Path) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t", extra="alert_delay_s: soon\n")
    proc = _run(config)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "alert_delay_s" in out


def test_an_api_port_in_use_is_one_line_before_the_store_is_opened(tmp_path: Path) -> None:
    config = write_collector_setup(tmp_path, port=1, topic_root="t")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config.write_text(
            config.read_text().replace("http: null", f"http: {{host: 127.0.0.1, port: {port}}}")
        )
        proc = _run(config)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == (
        f"kerbside-collector: cannot serve the API on 127.0.0.1:{port}: address already in use"
        f" (the http section of {config})\n"
    )
    assert not (tmp_path / "collector.db").exists()


def test_of_two_collectors_claiming_one_port_the_second_to_listen_is_told_in_one_line() -> None:
    http = HttpConfig(host="127.0.0.1", port=free_port())
    first = claim_api_address(http)
    second = claim_api_address(http)  # neither listens yet: both may claim the port
    try:
        listen_api(first, http, 8)
        with pytest.raises(ApiPortError) as refused:
            listen_api(second, http, 8)
        assert str(refused.value) == (
            f"cannot serve the API on 127.0.0.1:{http.port}: address already in use"
        )
    finally:
        for sock in [*first, *second]:
            sock.close()


def test_sighup_reloads_the_site_or_keeps_the_old_one(
    tmp_path: Path, broker: Mosquitto, topic_root: str
) -> None:
    config = write_collector_setup(tmp_path, port=broker.port, topic_root=topic_root)
    log = tmp_path / "log.txt"
    proc = start_collector(config, log)
    try:
        wait_for_log(log, "collector started")
        site = tmp_path / "site.yaml"
        good = site.read_text()
        site.write_text(good.replace("B004", "B005"))
        proc.send_signal(signal.SIGHUP)
        wait_for_log(log, "site reloaded: 1 zones, 4 bays")
        site.write_text(good.replace("controlled_hours: any", "controlled_hours: sometimes"))
        proc.send_signal(signal.SIGHUP)
        wait_for_log(log, "keeping the old site: zones[0].controlled_hours")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
