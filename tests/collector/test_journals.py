"""A journal file read line by line: its lines as they are, whatever its start was looked at
for; a file that is no journal at all told from a journal with bad lines; the config's
``journal_file`` read that way."""

from __future__ import annotations

import gzip
import io
import json
import logging
from codecs import BOM_UTF8
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerbside.collector.journals import (
    HEAD_BYTES,
    check_journal,
    journal_lines,
    not_text,
)
from kerbside.collector.records import MemorySeenEvents, RecordValidator
from tests.collector.rules_builders import Journal, make_site
from tests.collector.test_cycle import T0, Clock, make
from tests.helpers import occupancy_event

SITE = make_site()


@given(
    st.lists(st.binary(max_size=3 * HEAD_BYTES // 2), max_size=6),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_the_lines_are_the_files_wherever_the_head_ends(parts: list[bytes], end: bytes) -> None:
    data = end.join(parts)
    lines, _ = journal_lines(io.BytesIO(data))
    assert list(lines) == list(io.BytesIO(data.removeprefix(BOM_UTF8)))


@pytest.mark.parametrize("rest", [b"", b"\n", b"{}\n" * 4000])
def test_a_byte_order_mark_at_the_start_is_no_part_of_line_1(rest: bytes) -> None:
    """Windows editors put one there; one anywhere else is left for the line to be judged."""
    data = BOM_UTF8 + b'{"a": 1}\n' + BOM_UTF8 + b'{"b": 2}\n' + rest
    lines, what = journal_lines(io.BytesIO(data))
    assert list(lines) == [b'{"a": 1}\n', BOM_UTF8 + b'{"b": 2}\n', *io.BytesIO(rest)]
    assert what is None
    only, _ = journal_lines(io.BytesIO(BOM_UTF8))
    assert list(only) == []


@pytest.mark.parametrize("cut", [HEAD_BYTES - 1, HEAD_BYTES, HEAD_BYTES + 1])
def test_a_line_across_the_head_is_one_line(cut: int) -> None:
    data = b"x" * cut + b"\n" + b"y" * 10 + b"\n"
    lines, what = journal_lines(io.BytesIO(data))
    assert list(lines) == [b"x" * cut + b"\n", b"y" * 10 + b"\n"]
    assert what is None


@pytest.mark.parametrize(
    ("head", "says"),
    [
        pytest.param(gzip.compress(b"{}\n", mtime=0), "gzip-compressed", id="gzip"),
        pytest.param(b"SQLite format 3\x00\x10\x00", "a SQLite database", id="sqlite"),
        pytest.param('{"type": "right"}\n'.encode("utf-16"), "UTF-16 text", id="utf16-bom"),
        pytest.param(
            '{"type": "right"}\n'.encode("utf-16-le"), "not text: a NUL byte at byte 1", id="utf16"
        ),
        pytest.param(b'{"a": 1}\n\x00', "not text: a NUL byte at byte 9", id="nul"),
    ],
)
def test_what_a_start_that_is_not_text_is(head: bytes, says: str) -> None:
    what = not_text(head)
    assert what is not None
    assert what.startswith(says)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'{"a": 1}\n', id="json"),
        pytest.param(b"caf\xe9\n", id="latin1"),
        pytest.param(b"\xef\xbb\xbf{}\n", id="utf8-bom"),
    ],
)
def test_text_is_text_even_when_a_line_is_not_utf8(head: bytes) -> None:
    """A line that is not UTF-8 is rejected on its own (not_utf8), as the collector rejects
    such a message: only a NUL byte or a known binary start make a file not text."""
    assert not_text(head) is None


def _checked(data: bytes) -> tuple[int, int, str | None]:
    lines, what = journal_lines(io.BytesIO(data))
    journal = check_journal(lines, RecordValidator(SITE, MemorySeenEvents()), what)
    return len(journal.accepted), len(journal.rejected), journal.not_a_journal()


def test_a_binary_file_with_a_record_in_it_is_a_journal_with_bad_lines() -> None:
    good = Journal().park("2026-11-26 09:00", "2026-11-26 10:00").lines
    garbage = bytes(range(256))
    assert _checked(garbage) == (0, 2, "not text: a NUL byte at byte 0 (a binary file, or UTF-16)")
    assert _checked(garbage + b"\n" + "\n".join(good).encode()) == (2, 2, None)
    assert _checked(b"\n\n") == (0, 0, None)  # blank: nothing to judge
    assert _checked(b"no json\n") == (0, 1, None)  # text: its lines are rejected one by one


# -- the config's journal_file ----------------------------------------------------------------


def _right(right_id: str) -> str:
    return json.dumps(
        {
            "type": "right",
            "right_id": right_id,
            "kind": "payment",
            "bay_id": "B001",
            "start": "2026-11-26T08:00:00Z",
            "end": "2026-11-26T09:00:00Z",
        }
    )


def test_journal_file_lines_not_utf8_are_rejected_one_by_one_and_the_rest_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It was a traceback that stopped ``run`` at start."""
    service, _ = make(tmp_path, Clock(T0))
    path = tmp_path / "rights.jsonl"
    event = json.dumps({"type": "occupancy", **occupancy_event(1, "B001", "occupied", T0)})
    path.write_bytes(
        b'{"type": "right", "right_id": "caf\xe9"}\n'
        + f"{_right('r1')}\n{event}\n{_right('r2')}\n".encode()
    )
    with caplog.at_level(logging.INFO, "kerbside.collector.commands"):
        service.commands.load_journal_file(path)
    assert service.store.right("r1") is not None
    assert service.store.right("r2") is not None
    assert [r.getMessage() for r in _loading(caplog)] == [
        f"journal_file {path}:1 rejected: not_utf8: not UTF-8 at byte 34",
        f"journal_file {path}: occupancy events ignored (it holds rights and suspensions): 1",
        f"journal_file {path}: 4 records read, 1 rejected; new or changed rights and"
        " suspensions: 2",
    ]


def test_journal_file_saved_with_a_byte_order_mark_is_loaded_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = make(tmp_path, Clock(T0))
    path = tmp_path / "rights.jsonl"
    path.write_bytes(BOM_UTF8 + f"{_right('r1')}\n{_right('r2')}\n".encode())
    with caplog.at_level(logging.INFO, "kerbside.collector.commands"):
        service.commands.load_journal_file(path)
    assert service.store.right("r1") is not None
    assert service.store.right("r2") is not None
    assert [r.getMessage() for r in _loading(caplog)] == [
        f"journal_file {path}: 2 records read, 0 rejected; new or changed rights and"
        " suspensions: 2",
    ]


def test_journal_file_that_is_no_journal_is_one_error_and_nothing_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = make(tmp_path, Clock(T0))
    path = tmp_path / "rights.jsonl.gz"
    path.write_bytes(gzip.compress(f"{_right('r1')}\n".encode() * 100))
    with caplog.at_level(logging.INFO, "kerbside.collector.commands"):
        service.commands.load_journal_file(path)
    assert service.store.right("r1") is None
    assert [(r.levelname, r.getMessage()) for r in _loading(caplog)] == [
        (
            "ERROR",
            f"journal_file {path}: not a journal: gzip-compressed; decompress it first"
            " (gunzip); nothing loaded",
        )
    ]


def _loading(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What loading the file logged (the store's recovery logs too, when an earlier test in the
    process set the root logger to INFO)."""
    return [r for r in caplog.records if r.name == "kerbside.collector.commands"]
