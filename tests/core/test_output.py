"""Records on stdout: written and flushed; a reader gone away (``| head``) ends them quietly; a
full disk is an ``OutputError`` of one line; what the lines' source raises is its own."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.core.output import OutputError, print_lines


class GonePipe:
    """stdout whose reader went away, on a real file descriptor (which ends up on /dev/null)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def test_each_line_is_written_and_flushed(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_lines(iter(["{}", '{"a": 1}']))
    assert capsys.readouterr().out == '{}\n{"a": 1}\n'


def test_a_reader_gone_away_ends_the_lines_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines are no longer taken, and stdout is pointed at /dev/null, so that the flush at
    exit finds nothing to complain about."""
    path = tmp_path / "stdout"
    gone = GonePipe(path)
    monkeypatch.setattr(sys, "stdout", gone)
    taken: list[str] = []

    def lines() -> Iterator[str]:
        for line in ["1", "2", "3"]:
            taken.append(line)
            yield line

    try:
        assert not print_lines(lines())
        assert taken == ["1"]
        with open(gone.fileno(), "wb", closefd=False) as now:
            now.write(b"after\n")
    finally:
        gone.close()
    assert path.read_bytes() == b""


def test_a_full_disk_is_an_output_error_of_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """And stdout is pointed at /dev/null: what stays in its buffer cannot fail again at exit
    (Python's "Exception ignored" and exit 120, after the command's one line)."""
    full = Path("/dev/full").open("w")  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stdout", full)
    with pytest.raises(OutputError) as raised:
        print_lines(["{}"])
    monkeypatch.undo()
    full.close()  # flushes its buffer, "{}\n": to /dev/null now
    assert str(raised.value) == "cannot write to stdout: No space left on device"
    assert isinstance(raised.value.__cause__, OSError)


def test_what_the_lines_raise_is_not_taken_for_an_output_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file the lines are read from that fails is that file's error, not stdout's."""

    def lines() -> Iterator[str]:
        yield "{}"
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError) as raised:
        print_lines(lines())
    assert not isinstance(raised.value, OutputError)
    assert raised.value.errno == errno.EIO
