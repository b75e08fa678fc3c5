"""Restarting a gateway's agent under a running simulator loses no event, counted at the collector.

The broker and the collector are the ones the roles deployed, running inside the server root
(the collector as the `kerbside` user with the role's config). The agent runs with the edge
config the role wrote, pointed at the simulator's pty instead of the udev name and with
`clock.require_sync` off (this machine's clock may not be NTP-synchronised) and confirmation
times scaled to the simulator's speed. No systemd runs
here, so the restart is what `systemctl restart kerbside-edge` does with the role's unit
(KillSignal=SIGTERM, wait for exit, start again), done three times while events flow.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ansible.conftest import GATEWAY, Broker, Deployment
from tests.ansible.targets import in_root
from tests.helpers import wait_for_port, wait_until

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

BIN = Path(sys.executable).parent
RUN_S = 10.0  # agent uptime between restarts
# Simulated seconds per wall second: enough arrivals and departures in a minute that every
# agent lifetime between restarts confirms some (a restarted agent does not republish a state
# it already published).
SPEED = 120


@pytest.fixture
def collector_service(deployment: Deployment, deployed_broker: Broker) -> Iterator[Path]:
    log = (deployment.workdir / "collector.log").open("wb")
    proc = subprocess.Popen(
        in_root(
            deployment.server.root,
            "/opt/kerbside/venv/bin/kerbside-collector",
            "run",
            "--config",
            "/etc/kerbside/collector.yaml",
            user="kerbside",
        ),
        stdout=log,
        stderr=log,
    )
    try:
        wait_for_port(deployment.ports["http"], timeout=60)
        yield deployment.server.path("/var/lib/kerbside/collector.db")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def simulator(deployment: Deployment) -> Iterator[Path]:
    sim_dir = deployment.workdir / "sim"
    proc = subprocess.Popen(
        [
            str(BIN / "kerbside-sim"),
            "serial",
            "--site",
            str(deployment.site_file),
            "--gateway",
            GATEWAY,
            "--quick",
            "--speed",
            "5",
            "--seed",
            "3",
            "--dir",
            str(sim_dir / "tty"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    tty = Path(proc.stdout.readline().strip())
    try:
        assert tty.name == "tty0", tty
        yield tty
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def agent_config(deployment: Deployment, tty: Path) -> Path:
    deployed = yaml.safe_load(deployment.gateway.path("/etc/kerbside/edge.yaml").read_text())
    deployed["mqtt"]["password_file"] = str(deployment.gateway.path("/etc/kerbside/mqtt.pass"))
    deployed["mqtt"]["tls"]["ca"] = str(deployment.gateway.path("/etc/kerbside/ca.pem"))
    deployed["serial"] = [{"port": str(tty), "baudrate": 115200}]
    deployed["outbox"]["path"] = str(deployment.workdir / "outbox.db")
    deployed["clock"] = {"require_sync": False}
    # The simulator runs SPEED times faster than real time: the confirmation times are scaled
    # alike (10 s of simulated time), so its sessions (60 s of simulated time and more) confirm.
    confirm_s = round(10 / SPEED, 3)
    deployed["detector"].update(confirm_occupied_s=confirm_s, confirm_vacant_s=confirm_s)
    path = deployment.workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(deployed))
    return path


def outbox_meta(outbox: Path) -> tuple[str, int]:
    """The outbox's epoch and the last seq it handed out (read-only, as an operator would)."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return str(meta["epoch"]), int(meta["last_seq"])


def collector_seqs(store: Path, epoch: str) -> set[int]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT event_id FROM events WHERE event_id LIKE ?", (f"{GATEWAY}:{epoch}:%",)
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return set()
    finally:
        db.close()
    return {int(event_id.rsplit(":", 1)[1]) for (event_id,) in rows}


def test_agent_restarts_lose_no_event(
    deployment: Deployment, collector_service: Path, simulator: Path
) -> None:
    config = agent_config(deployment, simulator)
    log = (deployment.workdir / "agent.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(BIN / "kerbside-edge"), "run", "--config", str(config)], stdout=log, stderr=log
        )

    outbox = deployment.workdir / "outbox.db"

    def stop(agent: subprocess.Popen[bytes]) -> int:
        agent.send_signal(signal.SIGTERM)  # systemctl restart: stop (SIGTERM), then start
        assert agent.wait(timeout=30) == 0
        return outbox_meta(outbox)[1]

    agent = start()
    seq_at_stop = []
    try:
        for _ in range(3):
            time.sleep(RUN_S)  # each lifetime of the agent lasts this long, on purpose
            seq_at_stop.append(stop(agent))
            agent = start()
        time.sleep(RUN_S)  # the last lifetime
        seq_at_stop.append(stop(agent))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()

    # Events were confirmed before the first restart and after it (how many in each lifetime is
    # up to the simulated drivers).
    assert 0 < seq_at_stop[0] < seq_at_stop[-1], seq_at_stop
    epoch, last_seq = outbox_meta(outbox)
    with contextlib.suppress(AssertionError):  # the assertion below says what is missing
        wait_until(
            lambda: collector_seqs(collector_service, epoch) == set(range(1, last_seq + 1)),
            30,
            every=0.5,
        )
    seqs = collector_seqs(collector_service, epoch)
    missing = sorted(set(range(1, last_seq + 1)) - seqs)
    assert seqs == set(range(1, last_seq + 1)), f"{len(seqs)} of {last_seq}, missing {missing}"
