"""The README's first command, exactly as written, in a fresh clone with a fresh virtualenv.

The clone is of this repository's committed HEAD. The command ends with ``kerbside demo``, which
runs until Ctrl-C: ``timeout -s INT`` plays the person pressing it, and the demo must stop cleanly
(exit 0) having printed the officers' page and its progress. The README's second command
(``bash .ci/run``) is what CI itself runs. Every command's ``--help`` has an example.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.demo import port_is_free
from tests.e2e.test_demo import processes_using

ROOT = Path(__file__).resolve().parents[2]
# pip install from a warm cache (~75 s here), then the demo for the rest of the time.
RUN_FOR_S = 160


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None, "README.md has no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_the_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("kerbside demo")
    assert commands[1] == "bash .ci/run"


@pytest.mark.timeout(RUN_FOR_S + 60)
def test_readme_demo_command_runs_in_a_fresh_clone(tmp_path: Path) -> None:
    if not port_is_free(8000):
        pytest.fail("port 8000 is in use on 127.0.0.1: the README's `kerbside demo` needs it")
    clone = tmp_path / "kerbside"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    command = readme_commands()[0]
    result = subprocess.run(
        # --preserve-status: the demo's own exit status, not timeout's 124.
        ["timeout", "--preserve-status", "-s", "INT", str(RUN_FOR_S), "bash", "-c", command],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=RUN_FOR_S + 30,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, (out[-3000:], result.stderr[-3000:])
    assert "officers' page: http://127.0.0.1:8000/officer" in out, out
    assert re.search(r"officer token:\s+kbs_\S+", out), out
    assert re.search(r"\[\s*\d+s\] bays occupied \d+/15", out), out
    assert "kerbside demo: stopped" in out, out
    # Nothing left running from the clone's virtualenv, and the temporary work dir is gone.
    assert processes_using(clone) == []
    workdir = re.search(r"files and logs: (\S+) \(removed at the end\)", out)
    assert workdir is not None, out
    assert not Path(workdir.group(1)).exists()


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:  # argparse has no public walk of subcommands
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _all_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    from kerbside.cli import build_parser as umbrella  # noqa: PLC0415
    from kerbside.collector.cli import build_parser as collector  # noqa: PLC0415
    from kerbside.edge.cli import build_parser as edge  # noqa: PLC0415
    from kerbside.sim.cli import build_parser as sim  # noqa: PLC0415

    found: list[tuple[str, argparse.ArgumentParser]] = []
    for name, build in (
        ("kerbside", umbrella),
        ("kerbside-edge", edge),
        ("kerbside-collector", collector),
        ("kerbside-sim", sim),
    ):
        found += list(_parsers(build(), name))
    return found


@pytest.mark.parametrize(("name", "parser"), _all_commands(), ids=lambda x: str(x)[:40])
def test_every_command_help_has_an_example(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert re.search(r"examples?:", text), f"`{name} --help` has no example"
