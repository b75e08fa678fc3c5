"""GET /api/v1/gateways' figures, from a real store (SQLite file and PostgreSQL): events, seq
gaps, outbox epochs."""

from __future__ import annotations

from kerbside.collector.effects import GatewayRow
from kerbside.collector.gateway_stats import gateway_summaries
from kerbside.collector.store.sqlite import SqliteStore
from tests.collector.store_rows import journal_row, write
from tests.pg import Stores


def _event(gateway: str, epoch: str, seq: int) -> dict[str, object]:
    return {
        "type": "occupancy",
        "v": 1,
        "event_id": f"{gateway}:{epoch}:{seq}",
        "gateway_id": gateway,
        "seq": seq,
        "bay_id": "B1",
        "sensor_id": "S1",
        "state": "vacant",
        "ts": "2026-11-26T08:00:00.000Z",
        "confirmed_ts": "2026-11-26T08:00:10.000Z",
        "reason": None,
    }


def test_gaps_are_counted_per_epoch_and_the_latest_epoch_gives_first_and_last(
    stores: Stores,
) -> None:
    store = stores.open()
    rows = [
        # gw-a: epoch e1 1..3 complete, then its outbox was wiped: epoch e2 with 1, 2, 4, 5, 7.
        journal_row("occupancy", seq, _event("gw-a", epoch, seq))
        for epoch, seqs in (("e1", (1, 2, 3)), ("e2", (1, 2, 4, 5, 7)))
        for seq in seqs
    ]
    # gw-b: the collector met it mid-stream; seq 11 twice (QoS 1)
    rows += [journal_row("occupancy", seq, _event("gw-b", "x9", seq)) for seq in (10, 11, 11)]
    rows.append(journal_row("right", 5, {"type": "right", "right_id": "r1"}))
    write(
        store,
        journal=rows,
        gateways=[
            GatewayRow("gw-a", True, 1_800_000_000_000, None, None),
            GatewayRow("gw-c", False, 1_800_000_000_000, None, None),  # heard of, no events
        ],
    )
    summary = {g["gateway_id"]: g for g in store.gateway_summaries()}
    assert summary["gw-a"] == {
        "gateway_id": "gw-a",
        "online": True,
        "last_seen": "2027-01-15T08:00:00.000Z",
        "events": 8,
        "epochs": 2,
        "first_seq": 1,
        "last_seq": 7,
        "missing_seq": 2,
    }
    assert summary["gw-b"]["online"] is False
    assert summary["gw-b"]["last_seen"] is None
    assert (summary["gw-b"]["first_seq"], summary["gw-b"]["last_seq"]) == (10, 11)
    assert summary["gw-b"]["events"] == 3
    assert summary["gw-b"]["missing_seq"] == 0
    assert summary["gw-c"]["events"] == 0
    assert summary["gw-c"]["first_seq"] is None
    assert list(summary) == ["gw-a", "gw-b", "gw-c"]


def test_a_store_in_memory_has_no_figures() -> None:
    assert gateway_summaries(":memory:") == []
    assert SqliteStore(":memory:").gateway_summaries() == []
