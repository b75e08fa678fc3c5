"""Throwaway Debian targets for the Ansible tests.

A target is a Debian bookworm root made by ``debootstrap`` (cached as a tarball, so only the first
run on a machine downloads it), unpacked into a temp dir, with an OpenSSH server running inside it
on a free loopback port. Ansible reaches it exactly as it reaches a real gateway or server: over
SSH, as root. The sshd runs in a private mount namespace (``unshare --mount``) with its own /proc
and /dev binds, so stopping it leaves no mount behind and deleting the dir destroys the target.
No systemd runs inside: ``systemctl`` works offline there (enable writes the ``wants/`` links),
which is what the tests check.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port, wait_for_port

MIRROR = os.environ.get("KERBSIDE_TEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# What a fresh Raspberry Pi OS Lite / Debian server has or the roles install. Pre-included so
# the roles' package tasks find them present and the tests need no network at apply time.
PACKAGES = [
    "python3",
    "python3-venv",
    "python3-apt",
    "systemd",
    "systemd-timesyncd",
    "udev",
    "mosquitto",
    "openssh-server",
    "ca-certificates",
]
# Named after what it holds, so a changed package list builds a new cache.
_KEY = hashlib.sha256(" ".join([SUITE, *PACKAGES]).encode()).hexdigest()[:12]
CACHE = Path(os.environ.get("KERBSIDE_TEST_ROOT_TAR", f"/var/cache/kerbside-test-root-{_KEY}.tar"))


def _build_cache() -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    work = CACHE.parent / (CACHE.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            SUITE,
            str(work),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )
    # Nothing may start services inside the root (package postinsts, ansible's apt module).
    policy = work / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    subprocess.run(["apt-get", "clean"], check=False)  # host cache only; the root's is below
    shutil.rmtree(work / "var/cache/apt/archives", ignore_errors=True)
    (work / "var/cache/apt/archives/partial").mkdir(parents=True)
    tmp = CACHE.with_suffix(".tmp")
    subprocess.run(["tar", "-C", str(work), "-cf", str(tmp), "."], check=True)
    tmp.replace(CACHE)
    shutil.rmtree(work, ignore_errors=True)


def ensure_root_tarball() -> Path:
    """The cached bookworm root tarball, built with debootstrap on first use (one at a time)."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / (CACHE.name + ".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not CACHE.exists():
            _build_cache()
    return CACHE


def unpack_root(dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(ensure_root_tarball()) as tar:
        tar.extractall(dest, filter="fully_trusted")
    return dest


def in_root(root: Path, *argv: str, user: str | None = None) -> list[str]:
    """argv that runs a command inside the root in a private mount namespace with /proc, /dev
    (as ``user`` of the root, with its groups, when given)."""
    userspec = f"--userspec={user}:{user} " if user else ""
    script = (
        'mount -t proc proc "$1/proc" && mount --bind /dev "$1/dev" && '
        f'shift && exec chroot {userspec}"$0" "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(root),
        str(root),
        *argv,
    ]


@dataclass
class Target:
    name: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            in_root(self.root, *argv), capture_output=True, text=True, check=False, timeout=60
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def ssh_target(name: str, root: Path, public_key: str) -> Iterator[Target]:
    """Unpack a fresh root at ``root`` and serve it over SSH on a free loopback port."""
    unpack_root(root)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen(
        in_root(
            root,
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-p",
            str(port),
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PermitRootLogin=prohibit-password",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "UsePAM=no",
            "-o",
            "StrictModes=no",
        ),
        stdout=log,
        stderr=log,
    )
    target = Target(name, root, port, proc)
    try:
        wait_for_port(port, timeout=20)
        yield target
    finally:
        target.stop()
        log.close()
