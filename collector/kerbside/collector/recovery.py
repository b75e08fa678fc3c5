"""A core rebuilt from the store: where the collector carries on after a restart (SIGKILL
included) or a failed commit.

Each zone's rules are restored from its snapshot, then every journal record after the snapshot
is re-executed under the watermark it first ran under, and the rules advance to the last
committed watermark: the state they had, exactly. A record that cannot be read (damaged, or from
a version with a bug) is skipped and reported, never fatal: one bad record must not keep the
collector from starting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from kerbside.collector.bayboard import BayBoard
from kerbside.collector.core import CollectorCore, CoreSettings
from kerbside.collector.errors import CollectorError
from kerbside.collector.maintenance import Maintenance
from kerbside.collector.store import Store
from kerbside.collector.zones import ZoneRules
from kerbside.core.instants import Instant
from kerbside.core.site import Site

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    reexecuted: int = 0
    skipped: int = 0


def recover(
    store: Store, site: Site, settings: CoreSettings, now: Instant, report: RecoveryReport
) -> CollectorCore:
    found = store.recover()
    snapshots: dict[str, tuple[int, dict[str, Any]]] = {}
    for zone_id, snapshot in found.snapshots.items():
        try:
            data = json.loads(snapshot.text)
        except ValueError as exc:
            log.error(  # noqa: TRY400 (one line, no trace)
                "rules snapshot of zone %s cannot be read (%s): rebuilt from the journal",
                zone_id,
                exc,
            )
            continue
        snapshots[zone_id] = (snapshot.pos, data)
    try:
        rules = ZoneRules.restore(site, snapshots)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("rules snapshots cannot be restored (%s): rebuilt from the journal", exc)  # noqa: TRY400
        rules = ZoneRules.restore(site, {})
    board = BayBoard(
        site,
        settings.topic_root,
        found.bays,
        found.session_alerts if settings.points else (),
        points=settings.points,
    )
    gateways = {g: (online, max(seen, now)) for g, (online, seen) in found.gateways.items()}
    maintenance = Maintenance(
        settings.offline_after_ms, settings.low_battery_mv, found.maintenance, gateways
    )
    core = CollectorCore(site, settings, rules, board, maintenance)
    report.reexecuted = report.skipped = 0
    for entry in store.journal(after_pos=rules.oldest_position()):
        try:
            core.reexecute(entry)
        except (CollectorError, KeyError, TypeError, ValueError) as exc:
            # InstantError and orjson's decode error are ValueErrors too
            report.skipped += 1
            log.error(  # noqa: TRY400 (one line per record, no trace)
                "journal record %d (%s) cannot be read, skipped: %s", entry.pos, entry.type, exc
            )
            continue
        report.reexecuted += 1
    if found.watermark is not None:
        rules.advance_to(found.watermark)
    log.info(
        "rules recovered: %d journal records after the snapshots%s",
        report.reexecuted,
        f", {report.skipped} unreadable skipped" if report.skipped else "",
    )
    return core
