"""What every program a person runs owes them: ``--version`` from the package metadata, and
``--help`` (and the docs) that point at docs/ rather than at files users do not have."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kerbside.core.version import VERSION
from tests.helpers import run_on_full_disk, run_with_reader_gone

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROGRAMS = {
    "kerbside": "kerbside.cli",
    "kerbside-edge": "kerbside.edge.cli",
    "kerbside-collector": "kerbside.collector.cli",
    "kerbside-sim": "kerbside.sim.cli",
}
# The contract file's name, assembled so that this test is the one place that spells it.
FORBIDDEN = "SP" + "EC"


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version(program: str) -> None:
    result = run([str(BIN / program), "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{program} {VERSION}\n"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("asked", [["--help"], ["--version"], ["COMMAND", "--help"]])
def test_help_and_version_on_a_full_disk_are_one_line_and_exit_1(
    program: str, asked: list[str]
) -> None:
    argv = [str(BIN / program), *_first_command(program, asked)]
    done = run_on_full_disk(argv)
    assert (done.returncode, done.stderr) == (
        1,
        f"{program}: cannot write to stdout: No space left on device\n",
    )
    status, err = run_with_reader_gone(argv)  # | head
    assert (status, err) == (0, "")


def _first_command(program: str, asked: list[str]) -> list[str]:
    """``asked`` with COMMAND as the program's first subcommand."""
    import importlib  # noqa: PLC0415

    parser = importlib.import_module(PROGRAMS[program]).build_parser()
    first = next(
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    )
    return [first if arg == "COMMAND" else arg for arg in asked]


def command_lines(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    """Every command line that has its own --help: the program and each (sub)command."""
    lines = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines += command_lines(sub, [*prefix, name])
    return lines


def every_help() -> list[list[str]]:
    import importlib  # noqa: PLC0415

    lines = []
    for program, module in PROGRAMS.items():
        parser = importlib.import_module(module).build_parser()
        lines += [[str(BIN / program), *rest] for rest in command_lines(parser, [])]
    lines.append([sys.executable, "-m", "kerbside.collector.link.child"])
    return lines


def test_no_help_and_no_doc_cites_the_contract_file() -> None:
    offenders = []
    helps = every_help()
    assert len(helps) > 15  # every subcommand was found
    for argv in helps:
        result = run([*argv, "--help"])
        assert result.returncode == 0, (argv, result.stderr)
        if FORBIDDEN in result.stdout:
            offenders.append(" ".join(argv[-3:]) + " --help")
    roots = ["core", "edge", "collector", "firmware-sim", "demo", "docs", "ansible", "tests"]
    files = [ROOT / "README.md"] + [
        p
        for r in roots
        for p in (ROOT / r).rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md", ".yml", ".yaml", ".j2", ".html", ".js", ".txt", ""}
    ]
    this = Path(__file__).resolve()
    word = re.compile(rf"\b{FORBIDDEN}\b")
    for path in files:
        if path.resolve() == this or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [
            f"{path.relative_to(ROOT)}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if word.search(line)
        ]
    assert not offenders, offenders


def tracked_text_files() -> list[Path]:
    """Every file of the repository a person reads (vendored third-party assets aside)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=60
    ).stdout.decode()
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if "vendor" in path.parts or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and icons
        files.append(path)
    return files


# Assembled so that this test is not its own offender.
OUTSIDE = re.compile(
    "|".join(
        [
            "/" + "work/",  # the team's machine
            r"\bnotes/\S+\." + "md",  # notes kept beside the repository
            r"\.\./" + "shared",
            r"\bshared/[A-Z]+\." + "md",  # the steering files
        ]
    )
)
ISSUE = re.compile(r"\b" + "issue" + r"s?\s*(?:#|no\.?\s*)?\d+", re.IGNORECASE)


@pytest.mark.parametrize(
    ("what", "pattern"),
    [("a file outside the repository", OUTSIDE), ("an issue number", ISSUE)],
)
def test_nothing_in_the_tree_cites(what: str, pattern: re.Pattern[str]) -> None:
    """Users have the repository alone: a path to our machines or notes, or an issue number
    from our tracker, means nothing to them."""
    files = tracked_text_files()
    assert ROOT / "README.md" in files
    assert any(p.suffix == ".py" and "tests" in p.parts for p in files)
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, f"{what} cited in:\n" + "\n".join(offenders)
