"""The README's first command, exactly as written, in a fresh clone with a fresh virtualenv.

The clone is of this repository's committed HEAD. The command ends with ``kerbside demo``, which
runs until Ctrl-C. While it runs, its API (with the analyst token it prints) must show the street
working: bays filled, every gateway online with its events numbered 1..n and none missing, an
enforcement alert raised. Then the test presses Ctrl-C (SIGINT to the process group, as a
terminal sends it) and the demo must stop cleanly (exit 0), leaving nothing behind. The README's
second command (``bash .ci/run``) is what CI itself runs. Every command's ``--help`` has an
example.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.demo import port_is_free
from tests.e2e.test_demo import (
    DEMO_GATEWAYS,
    DemoRun,
    check_delivery,
    look,
    processes_using,
    street_busy,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"\[\s*\d+s\] bays occupied \d+/15")
ANALYST = re.compile(r"analyst token: (\S+)")
# pip install from a warm cache (~75 s here), then the demo until its first alerts (a driver who
# forgot to pay: a minute's observation and grace after arriving); at most:
LIMIT_S = 300


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


@pytest.mark.timeout(LIMIT_S + 60)
def test_readme_demo_command_runs_in_a_fresh_clone(tmp_path: Path) -> None:
    if not port_is_free(8000):
        pytest.fail("port 8000 is in use on 127.0.0.1: the README's `kerbside demo` needs it")
    clone = tmp_path / "kerbside"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    command = readme_commands()[0]
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        # its own process group: the Ctrl-C goes to the whole group, as a terminal sends it
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)  # a line at a time, as the demo prints them

    reader = threading.Thread(target=read)
    reader.start()
    run = DemoRun()

    def street_seen_busy() -> bool:
        assert proc.poll() is None, ("".join(lines)[-3000:], errors.read_text()[-3000:])
        token = ANALYST.search("".join(lines))
        return token is not None and look(8000, token.group(1), run) and street_busy(run)

    try:
        wait_until(street_seen_busy, LIMIT_S, every=1.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
    returncode = proc.wait(60)
    reader.join(10)
    assert proc.stdout is not None
    proc.stdout.close()
    out = "".join(lines)
    assert returncode == 0, (out[-3000:], errors.read_text()[-3000:])
    assert "officers' page: http://127.0.0.1:8000/officer" in out, out
    assert re.search(r"officer token:\s+kbs_\S+", out), out
    assert re.search(r"sign-in link: +http://127\.0\.0\.1:8000/officer#signin=", out), out
    assert PROGRESS.search(out), out
    assert "kerbside demo: stopped" in out, out
    assert len(run.bays) == 15
    check_delivery(run, DEMO_GATEWAYS)
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
