"""ansible-lint at its strictest shipped profile over the whole ansible/ tree."""

from __future__ import annotations

import pytest

from tests.ansible.conftest import ansible

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = ansible(
        "ansible-lint", "--offline", "--profile", "production", "--nocolor", ".", timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout
