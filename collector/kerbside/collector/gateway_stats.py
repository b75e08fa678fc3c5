"""Per-gateway delivery figures from the store's journal: did every event of every gateway arrive?

Read-only and on its own SQLite connection (the store runs in WAL mode), so the API can run it in a
worker thread without touching the collector's connection. Events of one gateway are numbered
1, 2, 3... per outbox epoch (the middle part of ``event_id``); a gateway whose outbox was wiped
starts a new epoch, so gaps are counted per epoch and summed. The journal is pruned after
``store.retention_days``: the figures cover what it still holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kerbside.core.instants import format_instant

# One row per (gateway, epoch): event_id is "{gateway_id}:{epoch}:{seq}".
_PER_EPOCH = """
SELECT gw, substr(eid, length(gw) + 2, length(eid) - length(gw) - length(seq_text) - 2) AS epoch,
       count(*), count(DISTINCT seq), min(seq), max(seq), max(pos)
FROM (SELECT pos, json_extract(body, '$.gateway_id') AS gw, json_extract(body, '$.event_id') AS eid,
             json_extract(body, '$.seq') AS seq,
             CAST(json_extract(body, '$.seq') AS TEXT) AS seq_text
      FROM journal WHERE type = 'occupancy')
GROUP BY gw, epoch
"""


def gateway_summaries(store_path: str | Path) -> list[dict[str, Any]]:
    """Every gateway heard of (status, health or events), sorted by id:
    ``{"gateway_id", "online", "last_seen", "events", "epochs", "first_seq", "last_seq",
    "missing_seq"}``; first/last seq are those of the gateway's latest epoch (None without
    events); ``missing_seq`` sums each epoch's gaps between its first and last seq."""
    if str(store_path) == ":memory:":
        return []
    uri = f"file:{Path(store_path).resolve()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        heard = {
            g: (bool(o), int(t))
            for g, o, t in db.execute("SELECT gateway_id, online, last_seen FROM gateways")
        }
        rows = db.execute(_PER_EPOCH).fetchall()
    finally:
        db.close()
    return summarise(heard, rows)


def summarise(
    heard: dict[str, tuple[bool, int]], rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    """The figures from what a store holds: each gateway heard of (online, last seen) and the
    rows of ``_PER_EPOCH`` (gateway, epoch, events, distinct seqs, first, last, newest pos)."""
    out: dict[str, dict[str, Any]] = {}
    for gw in sorted({*heard, *(r[0] for r in rows if r[0] is not None)}):
        online, seen = heard.get(gw, (False, None))
        out[gw] = {
            "gateway_id": gw,
            "online": online,
            "last_seen": None if seen is None else format_instant(seen),
            "events": 0,
            "epochs": 0,
            "first_seq": None,
            "last_seq": None,
            "missing_seq": 0,
        }
    latest: dict[str, int] = {}  # journal position of each gateway's newest event
    for gw, _epoch, count, distinct, first, last, pos in rows:
        if gw is None:
            continue
        item = out[gw]
        item["events"] += count
        item["epochs"] += 1
        item["missing_seq"] += (int(last) - int(first) + 1) - distinct
        if pos > latest.get(gw, -1):
            latest[gw] = pos
            item["first_seq"], item["last_seq"] = int(first), int(last)
    return list(out.values())
