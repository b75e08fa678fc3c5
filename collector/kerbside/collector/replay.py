"""``kerbside-collector replay``: the rules engine over a journal file (docs/rules.md).

Every line is validated as ``run`` validates it; accepted records are applied in order of
(time, position in the journal); the alerts raised at or before ``--until`` are printed with
their status as of ``--until``, sorted by (raised_at, bay_id, kind). A bad line gets a one-line
error on stderr with its line number and the rest carries on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from kerbside.collector.errors import RecordRejected
from kerbside.collector.records import (
    JournalRecord,
    MemorySeenEvents,
    RecordValidator,
    record_time,
)
from kerbside.collector.rules.alerts import Alert, AlertChange
from kerbside.collector.rules.engine import RulesEngine
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, InstantError, parse_instant
from kerbside.core.site import Site, load_site


def read_journal(
    lines: Iterable[bytes | str], site: Site
) -> tuple[list[tuple[Instant, int, JournalRecord]], list[str]]:
    """Validate every line: the accepted records as (time, line number, record), and the errors
    (``line N: reason: field: detail``). Repeated events are skipped silently."""
    validator = RecordValidator(site, MemorySeenEvents())
    accepted: list[tuple[Instant, int, JournalRecord]] = []
    errors: list[str] = []
    for number, record in validator.check_journal_lines(lines):
        if isinstance(record, RecordRejected):
            errors.append(f"line {number}: {record}")
        elif record is not None:
            accepted.append((record_time(record), number, record))
    accepted.sort(key=lambda item: (item[0], item[1]))
    return accepted, errors


def replay_records(
    accepted: list[tuple[Instant, int, JournalRecord]],
    site: Site,
    until: Instant | None = None,
    engine: RulesEngine | None = None,
) -> list[Alert]:
    """Run sorted accepted records through the engine: the alerts raised at or before ``until``
    (default: the latest record's time) as of ``until``, in output order."""
    if until is None:
        if not accepted:
            return []
        until = accepted[-1][0]
    engine = engine if engine is not None else RulesEngine(site)
    latest: dict[str, Alert] = {}

    def keep(changes: list[AlertChange]) -> None:
        for change in changes:
            latest[change.alert.alert_id] = change.alert

    for time, _number, record in accepted:
        if time > until:
            break
        if time > engine.clock + 1:
            keep(engine.advance(time - 1))
        keep(engine.apply(record))
    keep(engine.advance(until))
    return sorted(
        (a for a in latest.values() if a.raised_at <= until),
        # The record's own fields, compared as they are printed (kind alphabetically).
        key=lambda a: (a.raised_at, a.bay_id, a.kind),
    )


def replay_lines(
    lines: Iterable[bytes | str], site: Site, until: Instant | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Replay journal lines: the alert records to print, and the per-line errors."""
    accepted, errors = read_journal(lines, site)
    return [a.to_record() for a in replay_records(accepted, site, until)], errors


def replay_main(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    until = None
    if args.until is not None:
        try:
            until = parse_instant(args.until)
        except InstantError as exc:
            raise ConfigError(f"--until: {exc}") from exc
    try:
        if args.journal == "-":
            accepted, errors = read_journal(sys.stdin.buffer, site)
        else:
            with open(args.journal, "rb") as journal:
                accepted, errors = read_journal(journal, site)
    except OSError as exc:
        raise ConfigError(f"{args.journal}: cannot read: {exc.strerror or exc}") from exc
    for error in errors:
        print(f"{args.journal}: {error}", file=sys.stderr)
    out = sys.stdout
    for alert in replay_records(accepted, site, until):
        out.write(json.dumps(alert.to_record(), separators=(", ", ": ")) + "\n")
    out.flush()
    return 0
