"""A journal file (JSON Lines, docs/protocols.md) read and validated line by line, as ``replay``
and the config's ``journal_file`` read it.

A journal with bad lines is still a journal: each bad line is rejected as ``run`` would reject
the message, and the rest is used. A file none of whose lines is a record, and whose start is
not text (compressed, a database, UTF-16, or any NUL byte, as git and diff judge a file binary),
is no journal at all: ``not_a_journal`` says what it is instead, in one line, where the lines
would each have been rejected.
"""

from __future__ import annotations

import io
import itertools
from codecs import BOM_UTF8
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from kerbside.collector.errors import RecordRejected
from kerbside.collector.records import JournalRecord, RecordValidator, record_time
from kerbside.core.instants import Instant

# How much of a file's start is looked at to tell text from binary (git looks at 8,000 bytes).
HEAD_BYTES = 8000

_UTF16 = "UTF-16 text; a journal is UTF-8 (save it again as UTF-8)"
# Files people hand over by mistake, told by their first bytes.
_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed; decompress it first (gunzip)"),
    (
        b"SQLite format 3\x00",
        "a SQLite database (a store's journal is printed by kerbside-collector export-journal)",
    ),
    (b"\xff\xfe", _UTF16),
    (b"\xfe\xff", _UTF16),
)


@dataclass
class CheckedJournal:
    """What validating a journal's lines made of them. Blank lines are none of these."""

    # (time, line number, record), in the file's order
    accepted: list[tuple[Instant, int, JournalRecord]] = field(default_factory=list)
    rejected: list[tuple[int, RecordRejected]] = field(default_factory=list)
    repeats: int = 0  # an occupancy event again, the same: ignored, as the live collector does
    not_text: str | None = None  # what the file's start is, when it is not text

    @property
    def read(self) -> int:
        """Lines that were not blank."""
        return len(self.accepted) + len(self.rejected) + self.repeats

    def errors(self) -> list[str]:
        """One per rejected line: ``line N: reason: field: detail``."""
        return [f"line {number}: {rejected}" for number, rejected in self.rejected]

    def skipped(self) -> list[tuple[str, int]]:
        """(reason, lines) of the rejected lines, most common first."""
        counts = Counter(rejected.reason for _, rejected in self.rejected)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def not_a_journal(self) -> str | None:
        """What the file is instead of a journal: not text, and not one line of it a record."""
        if self.not_text is None or self.accepted or self.repeats or not self.rejected:
            return None
        return self.not_text


def journal_lines(stream: BinaryIO) -> tuple[Iterator[bytes], str | None]:
    """The stream's lines, and what its start is when that is not text (else None). A byte
    order mark at the start of the stream (Windows editors add one) is not part of line 1."""
    head = stream.read(HEAD_BYTES)
    # only at the very start: a BOM anywhere else is no JSON, and its line is rejected
    lines = io.BytesIO(head.removeprefix(BOM_UTF8) + stream.readline())
    return itertools.chain(lines, stream), not_text(head)


def not_text(head: bytes) -> str | None:
    """What a file starting with ``head`` is, when it is not text."""
    for start, what in _NOT_TEXT:
        if head.startswith(start):
            return what
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"not text: a NUL byte at byte {nul} (a binary file, or UTF-16)"
    return None


def check_journal(
    lines: Iterable[bytes | str], validator: RecordValidator, not_text: str | None = None
) -> CheckedJournal:
    """Validate every line as ``run`` validates a record."""
    journal = CheckedJournal(not_text=not_text)
    accepted, rejected = journal.accepted, journal.rejected
    for number, record in validator.check_journal_lines(lines):
        if isinstance(record, RecordRejected):
            rejected.append((number, record))
        elif record is None:
            journal.repeats += 1
        else:
            accepted.append((record_time(record), number, record))
    return journal
