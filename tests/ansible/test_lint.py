"""ansible-lint at its strictest shipped profile over the whole ansible/ tree."""

from __future__ import annotations

import pytest

import subprocess
import sys
from pathlib import Path

from tests.ansible.conftest import ANSIBLE_DIR, ansible_env

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-lint"),
            "--offline",
            "--profile",
            "production",
            "--nocolor",
            ".",
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout
