"""A journal file (JSON Lines, docs/protocols.md) validated line by line, as ``replay`` reads it.

A journal with bad lines is still a journal: each bad line is rejected as ``run`` would reject
the message, and the rest is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from kerbside.collector.errors import RecordRejected
from kerbside.collector.records import JournalRecord, RecordValidator, record_time
from kerbside.core.instants import Instant


@dataclass
class CheckedJournal:
    """What validating a journal's lines made of them. Blank lines are none of these."""

    # (time, line number, record), in the file's order
    accepted: list[tuple[Instant, int, JournalRecord]] = field(default_factory=list)
    rejected: list[tuple[int, RecordRejected]] = field(default_factory=list)
    repeats: int = 0  # an occupancy event again, the same: ignored, as the live collector does

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


def check_journal(lines: Iterable[bytes | str], validator: RecordValidator) -> CheckedJournal:
    """Validate every line as ``run`` validates a record."""
    journal = CheckedJournal()
    accepted, rejected = journal.accepted, journal.rejected
    for number, record in validator.check_journal_lines(lines):
        if isinstance(record, RecordRejected):
            rejected.append((number, record))
        elif record is None:
            journal.repeats += 1
        else:
            accepted.append((record_time(record), number, record))
    return journal
