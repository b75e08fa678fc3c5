"""``kerbside-collector replay``: the rules engine over a journal file (docs/rules.md).

Every line is validated as ``run`` validates it; accepted records are applied in order of
(time, position in the journal), less the versions of rights and suspensions that a later line
replaced before they began (``run`` drops them when that line comes); the alerts raised at or
before ``--until`` are printed with their status as of ``--until``, sorted by (raised_at,
bay_id, kind). stdout carries those alert records and nothing else. A bad line gets a one-line
error on stderr with its line number and the rest carries on; a last line on stderr sums the
journal up, and with ``--strict`` any bad line makes the exit status 1, so that a result that
leaves lines out cannot pass for a whole one.
"""

from __future__ import annotations

import argparse
import json
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

from kerbside.collector.console import Progress, counted
from kerbside.collector.journals import CheckedJournal, check_journal, journal_lines
from kerbside.collector.records import JournalRecord, MemorySeenEvents, RecordValidator
from kerbside.collector.rules.alerts import Alert, AlertChange
from kerbside.collector.rules.engine import RulesEngine, replaced_versions
from kerbside.core.config import ConfigError
from kerbside.core.instants import Instant, InstantError, parse_instant
from kerbside.core.output import plural, print_lines
from kerbside.core.site import Site, load_site


def read_journal(
    lines: Iterable[bytes | str], site: Site
) -> tuple[list[tuple[Instant, int, JournalRecord]], list[str]]:
    """Validate every line: the accepted records as (time, line number, record), and the errors
    (``line N: reason: field: detail``). Repeated events are skipped silently."""
    journal = check_journal(lines, RecordValidator(site, MemorySeenEvents()))
    return _in_order(journal), journal.errors()


def replay_records(
    accepted: list[tuple[Instant, int, JournalRecord]],
    site: Site,
    until: Instant | None = None,
    engine: RulesEngine | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Alert]:
    """Run sorted accepted records through the engine, less the versions later ones replaced
    before they began: the alerts raised at or before ``until`` (default: the latest record's
    time) as of ``until``, in output order. ``progress`` is told now and then how many records
    have been taken."""
    if until is None:
        if not accepted:
            return []
        until = accepted[-1][0]
    engine = engine if engine is not None else RulesEngine(site)
    latest: dict[str, Alert] = {}

    def keep(changes: list[AlertChange]) -> None:
        for change in changes:
            latest[change.alert.alert_id] = change.alert

    replaced = replaced_versions(accepted)
    records = accepted if progress is None else counted(accepted, progress)
    for time, number, record in records:
        if time > until:
            break
        if number in replaced:
            continue
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
    with Progress(sys.stderr) as progress:
        return _replay(args.journal, site, until, args.strict, progress)


def _replay(path: str, site: Site, until: Instant | None, strict: bool, progress: Progress) -> int:
    name = "stdin" if path == "-" else path
    journal = _read(path, name, site, progress)
    progress.wipe()
    what = journal.not_a_journal()
    if what is not None:
        raise ConfigError(f"{name}: not a journal: {what}")
    for error in journal.errors():
        print(f"{name}: {error}", file=sys.stderr)
    accepted = _in_order(journal)
    applied = len(accepted) if until is None else bisect_right(accepted, until, key=_time)

    def tick(n: int) -> None:
        progress.say(lambda: f"{name}: {n} of {applied} records applied ({n * 100 // applied}%)")

    alerts = replay_records(accepted, site, until, progress=tick)
    progress.wipe()
    status = 1 if strict and journal.rejected else 0
    if print_lines(json.dumps(a.to_record(), separators=(", ", ": ")) for a in alerts):
        print(summary(name, journal, applied, len(alerts)), file=sys.stderr)
    return status


def summary(name: str, journal: CheckedJournal, applied: int, alerts: int) -> str:
    """The line that ends a replay's stderr: ``J: 12 records read: 9 applied, 3 skipped
    (not_json 2, unknown_bay 1); 4 alerts printed``, with records after ``--until`` and
    repeated events ignored when there are any."""
    parts = [f"{applied} applied"]
    if len(journal.accepted) > applied:
        parts.append(f"{len(journal.accepted) - applied} after --until")
    if journal.repeats:
        parts.append(f"{plural(journal.repeats, 'repeated event')} ignored")
    reasons = ", ".join(f"{reason} {n}" for reason, n in journal.skipped())
    parts.append(f"{len(journal.rejected)} skipped" + (f" ({reasons})" if reasons else ""))
    return (
        f"{name}: {plural(journal.read, 'record')} read: {', '.join(parts)};"
        f" {plural(alerts, 'alert')} printed"
    )


def _read(path: str, name: str, site: Site, progress: Progress) -> CheckedJournal:
    """The journal at ``path`` (``-``: stdin) validated, line by line; ``name`` in messages."""

    def tick(n: int) -> None:
        progress.say(lambda: f"{name}: {n} lines read")

    validator = RecordValidator(site, MemorySeenEvents())
    try:
        opened = nullcontext(sys.stdin.buffer) if path == "-" else open(path, "rb")  # noqa: SIM115
        with opened as stream:
            lines, not_text = journal_lines(stream)
            return check_journal(counted(lines, tick), validator, not_text)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from exc


def _in_order(journal: CheckedJournal) -> list[tuple[Instant, int, JournalRecord]]:
    """The accepted records in order of (time, line)."""
    return sorted(journal.accepted, key=lambda item: (item[0], item[1]))


def _time(item: tuple[Instant, int, JournalRecord]) -> Instant:
    return item[0]
