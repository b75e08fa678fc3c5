"""What providers, the council and officers ask the collector to do: validated against the site
and the store, then carried out by the core in one unit of work.

Each command returns what the API answers (the record as accepted, the alert as it now is) or
raises ``RecordRejected`` (422, naming the field), ``NotOwner`` (403), ``NotFound`` (404) or
``AlertClosed`` (409).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Literal

from kerbside.collector.core import (
    AddRight,
    AddSuspension,
    CancelRight,
    Command,
    OfficerAction,
)
from kerbside.collector.cycle import Cycle
from kerbside.collector.errors import AlertClosed, NotFound, NotOwner
from kerbside.collector.journals import check_journal, journal_lines
from kerbside.collector.records import RecordValidator, Right, Suspension, to_journal_dict
from kerbside.collector.store import Store, StoredRight

log = logging.getLogger(__name__)

SETTLE_POLL_S = 0.02


class Commands:
    def __init__(self, cycle: Cycle, store: Store, *, settle_s: float = 0.0) -> None:
        self._cycle = cycle
        self._store = store
        # With several collectors an officer's action is carried out by the alert's owner as it
        # follows the journal: the answer waits for it, up to this long.
        self._settle_s = settle_s

    def _validator(self) -> RecordValidator:
        return RecordValidator(self._cycle.site)

    async def post_right(
        self, body: dict[str, Any], owner: str, *, any_owner: bool = False
    ) -> dict[str, Any]:
        """A payment or permit of the provider ``owner``; one with a known ``right_id`` replaces
        it, if ``owner`` created it (``any_owner``: an admin, who may replace anyone's and
        leaves its owner as it was)."""
        right = self._validator().check_right(body)
        existing = self._store.right(right.right_id)
        if existing is not None:
            self._may_change(right.right_id, existing, owner, any_owner)
            owner = existing.owner if any_owner and existing.owner is not None else owner
        self._cycle.act([AddRight(right, owner)])
        return to_journal_dict(right)

    async def delete_right(
        self, right_id: str, owner: str, *, any_owner: bool = False
    ) -> dict[str, Any]:
        """Cancel a right of ``owner`` from now on; returns it as it was."""
        existing = self._store.right(right_id)
        if existing is None or existing.cancelled:
            raise NotFound(f"no right {right_id}")
        self._may_change(right_id, existing, owner, any_owner)
        self._cycle.act([CancelRight(right_id, existing.body, existing.owner)])
        return existing.body

    @staticmethod
    def _may_change(right_id: str, existing: StoredRight, owner: str, any_owner: bool) -> None:
        # A right belongs to the token that created it: another provider may neither shorten
        # nor cancel it (either would raise a false ``expired``). Rights without an owner (the
        # council's journal file, or stored before rights had owners) are an admin's.
        if not any_owner and existing.owner != owner:
            raise NotOwner(f"right {right_id} belongs to another provider")

    async def post_suspension(self, body: dict[str, Any]) -> dict[str, Any]:
        suspension = self._validator().check_suspension(body)
        self._cycle.act([AddSuspension(suspension)])
        return to_journal_dict(suspension)

    async def ack_alert(
        self, alert_id: str, officer: str, outcome: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        return await self._officer("ack", alert_id, officer, outcome, note)

    async def resolve_alert(
        self, alert_id: str, officer: str, outcome: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        return await self._officer("resolve", alert_id, officer, outcome, note)

    async def _officer(
        self,
        action: Literal["ack", "resolve"],
        alert_id: str,
        officer: str,
        outcome: str | None,
        note: str | None,
    ) -> dict[str, Any]:
        record = self._store.alert(alert_id)
        if record is None:
            raise NotFound(f"no alert {alert_id}")
        if record["status"] in ("cleared", "resolved"):
            raise AlertClosed(f"alert is {record['status']}")
        self._cycle.act([OfficerAction(alert_id, action, officer, outcome, note, record)])
        if self._settle_s and not (action == "ack" and record["status"] == "acknowledged"):
            await self._carried_out(alert_id, record["status"])
        found = self._store.alert_with_history(alert_id)
        assert found is not None
        return {**found[0], "history": found[1]}

    async def _carried_out(self, alert_id: str, status: str) -> None:
        deadline = time.monotonic() + self._settle_s
        while time.monotonic() < deadline:
            now = self._store.alert(alert_id)
            if now is not None and now["status"] != status:
                return
            await asyncio.sleep(SETTLE_POLL_S)
        log.warning("alert %s: its owner has not carried out the officer's action yet", alert_id)

    def load_journal_file(self, path: Path) -> None:
        """Rights and suspensions from a journal file (``journal_file``, before the API takes
        over): those the store holds already, the same, are skipped. Each line is judged as
        ``replay`` judges it; a file that is no journal at all (binary, compressed) is one
        error, not one per line."""
        try:
            with path.open("rb") as stream:
                lines, not_text = journal_lines(stream)
                journal = check_journal(lines, self._validator(), not_text)
        except OSError as exc:
            log.error("journal_file %s: %s", path, exc)  # noqa: TRY400 (one line, no trace)
            return
        what = journal.not_a_journal()
        if what is not None:
            log.error("journal_file %s: not a journal: %s; nothing loaded", path, what)
            return
        for number, rejected in journal.rejected:
            log.warning("journal_file %s:%d rejected: %s", path, number, rejected)
        known = {s["suspension_id"] for s in self._store.suspensions()}
        commands: list[Command] = []
        events = 0
        for _time, _number, record in journal.accepted:
            if isinstance(record, Right):
                stored = self._store.right(record.right_id)
                if stored is None or stored.body != to_journal_dict(record):
                    commands.append(AddRight(record))
            elif isinstance(record, Suspension):
                if record.suspension_id not in known:
                    commands.append(AddSuspension(record))
            else:
                events += 1
        if events:
            log.warning(
                "journal_file %s: occupancy events ignored (it holds rights and suspensions): %d",
                path,
                events,
            )
        log.info(
            "journal_file %s: %d records read, %d rejected; new or changed rights and"
            " suspensions: %d",
            path,
            journal.read,
            len(journal.rejected),
            len(commands),
        )
        if commands:
            self._cycle.act(commands)
