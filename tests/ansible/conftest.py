"""One real deployment for the Ansible tests: ``site.yml`` applied twice over SSH to two
throwaway Debian roots (a server with broker and collector, and a street gateway)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.targets import Target, in_root, ssh_target
from tests.helpers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
EXAMPLE_INVENTORY = ANSIBLE_DIR / "inventory" / "example"
GATEWAY = "gw-test-a"
OTHER_GATEWAY = "gw-test-b"

SITE: dict[str, Any] = {
    "site": "ansible-test",
    "timezone": "Europe/London",
    "zones": [
        {
            "id": "T-Z",
            "name": "Test zone",
            "controlled_hours": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
            ],
        }
    ],
    # Twenty bays on the gateway under test (enough arrivals and departures for the rolling
    # restart test), one on the other gateway.
    "bays": [
        *(
            {
                "id": f"T-{n:03d}",
                "zone": "T-Z",
                "kind": "paid" if n % 2 else "free",
                "sensor": f"S-{100 + n:06d}",
                "gateway": GATEWAY,
            }
            for n in range(1, 21)
        ),
        {
            "id": "T-900",
            "zone": "T-Z",
            "kind": "paid",
            "sensor": "S-000900",
            "gateway": OTHER_GATEWAY,
        },
    ],
}

RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass
class Run:
    returncode: int
    output: str
    recap: dict[str, dict[str, int]]


@dataclass
class Deployment:
    workdir: Path
    server: Target
    gateway: Target
    secrets: dict[str, object]
    ports: dict[str, int]
    site_file: Path
    tls_dir: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return bool(self.runs) and self.runs[0].returncode == 0


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    directory.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=directory,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
        cwd=directory,
    )
    return {
        name: (directory / f"{name}").read_text() for name in ("ca.crt", "server.crt", "server.key")
    }


def snapshot_source(dest: Path) -> Path:
    """The project's source as of now: the playbook builds its wheel from this copy, so files
    edited while the test runs cannot make the second run see a different release."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for root in ("core", "edge", "collector", "firmware-sim", "demo"):
        shutil.copytree(REPO / root, dest / root, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_DEPRECATION_WARNINGS"] = "False"
    # The controller's own venv first: ansible-playbook, and `kerbside site edge-config`.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def ansible(command: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """One of this venv's Ansible commands, run in the Ansible directory; its status unchecked."""
    return subprocess.run(
        [str(Path(sys.executable).parent / command), *args],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def play_on_localhost(
    workdir: Path, variables: dict[str, Any], tasks: list[dict[str, Any]]
) -> None:
    """``tasks`` in one playbook run on localhost with ``variables``; a failure fails the test
    with Ansible's output."""
    (workdir / "play-vars.yml").write_text(yaml.safe_dump(variables))
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    (workdir / "play.yml").write_text(yaml.safe_dump(play))
    proc = ansible(
        "ansible-playbook",
        "-i",
        "localhost,",
        "-e",
        f"@{workdir / 'play-vars.yml'}",
        str(workdir / "play.yml"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def run_playbook(deployment: Deployment, playbook: str = "site.yml") -> Run:
    inventory = deployment.workdir / "inventory" / "hosts.yml"
    proc = ansible(
        "ansible-playbook",
        "-i",
        str(inventory),
        "-e",
        f"@{deployment.workdir / 'test-vars.yml'}",
        str(ANSIBLE_DIR / playbook),
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(output)
    }
    (deployment.workdir / f"run-{len(deployment.runs) + 1}.log").write_text(output)
    return Run(proc.returncode, output, recap)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("ansible")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id")], check=True
    )
    public_key = (work / "id.pub").read_text()
    tls = make_tls(work / "tls")

    inventory = work / "inventory"
    (inventory / "files").mkdir(parents=True)
    # The example inventory's group_vars, as a real inventory would copy them.
    shutil.copytree(EXAMPLE_INVENTORY / "group_vars", inventory / "group_vars")
    site_file = inventory / "files" / "site.yaml"
    site_file.write_text(yaml.safe_dump(SITE, sort_keys=False))

    with (
        ssh_target("server", work / "server-root", public_key) as server,
        ssh_target(GATEWAY, work / "gateway-root", public_key) as gateway,
    ):
        common = {
            "ansible_host": "127.0.0.1",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(work / "id"),
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
        }
        (inventory / "hosts.yml").write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "children": {
                            "kerbside_broker": {"hosts": {"kerbside-server": None}},
                            "kerbside_collector": {"hosts": {"kerbside-server": None}},
                            "kerbside_gateways": {
                                "hosts": {GATEWAY: {"ansible_port": gateway.port}}
                            },
                        },
                        "hosts": {"kerbside-server": {"ansible_port": server.port}},
                        "vars": common,
                    }
                }
            )
        )
        ports = {"tls": free_port(), "local": free_port(), "http": free_port()}
        secrets: dict[str, object] = {
            # Test-only secrets, made up here; a real inventory keeps them in ansible-vault.
            "vault_kerbside_gateway_passwords": {
                GATEWAY: "pw-a-test-only",
                OTHER_GATEWAY: "pw-b-test-only",
            },
            "vault_kerbside_collector_mqtt_password": "pw-collector-test-only",
            "vault_kerbside_tls_ca": tls["ca.crt"],
            "vault_kerbside_tls_cert": tls["server.crt"],
            "vault_kerbside_tls_key": tls["server.key"],
            "vault_kerbside_api_tokens": [
                {"name": "pc-1234", "role": "officer", "token": "officer-token-test-only"},
                {"name": "ops", "role": "admin", "sha256": "ab" * 32},
            ],
        }
        test_vars = {
            **secrets,
            "kerbside_source_dir": str(snapshot_source(work / "src")),
            "kerbside_wheelhouse": str(work / "wheelhouse"),
            "kerbside_server_host": "127.0.0.1",
            "kerbside_broker_port_tls": ports["tls"],
            "kerbside_broker_local_port": ports["local"],
            "kerbside_collector_mqtt_port": ports["local"],
            "kerbside_collector_http_port": ports["http"],
            # No systemd runs inside the roots: units are enabled, not started.
            "kerbside_broker_start": False,
            "kerbside_collector_start": False,
            "kerbside_edge_start": False,
            "kerbside_edge_serial_devices": [
                {"name": "row-a", "vendor": "10c4", "product": "ea60", "serial": "KBS-T1"},
            ],
        }
        (work / "test-vars.yml").write_text(yaml.safe_dump(test_vars))
        dep = Deployment(work, server, gateway, secrets, ports, site_file, work / "tls")
        for _ in range(2):
            dep.runs.append(run_playbook(dep))
            if dep.runs[-1].returncode != 0:
                break
        yield dep


class Broker:
    """The server root's Mosquitto, started as its unit would start it; restartable."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.proc: subprocess.Popen[bytes] | None = None
        server = deployment.server
        for run_dir in ("run/mosquitto", "var/log/mosquitto"):
            server.path(run_dir).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            in_root(server.root, "chown", "mosquitto", "/run/mosquitto", "/var/log/mosquitto"),
            check=True,
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            in_root(
                self.deployment.server.root,
                "/usr/sbin/mosquitto",
                "-c",
                "/etc/mosquitto/mosquitto.conf",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.deployment.ports["tls"])
            wait_for_port(self.deployment.ports["local"])
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(f"mosquitto exited with {self.proc.wait()}") from None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Mosquitto saves its persistent state
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def deployed_broker(deployment: Deployment) -> Iterator[Broker]:
    assert deployment.applied, "site.yml did not apply"
    running = Broker(deployment)
    running.start()
    yield running
    running.stop()


def render_role_templates(
    workdir: Path, role: str, templates: dict[str, Path], overrides: dict[str, object]
) -> None:
    """Render ``templates`` ({template file: destination}) of ``role`` with Ansible itself, in
    one playbook run on localhost: the role's defaults, then ``overrides``."""
    role_dir = ANSIBLE_DIR / "roles" / role
    for dest in templates.values():
        dest.parent.mkdir(parents=True, exist_ok=True)
    variables = yaml.safe_load((role_dir / "defaults" / "main.yml").read_text()) or {}
    variables.update(overrides)
    variables["ansible_python_interpreter"] = sys.executable  # this venv, not a discovered one
    tasks = [
        {
            "name": f"render {name}",
            "ansible.builtin.template": {
                "src": str(role_dir / "templates" / name),
                "dest": str(dest),
            },
        }
        for name, dest in templates.items()
    ]
    play_on_localhost(workdir, variables, tasks)
