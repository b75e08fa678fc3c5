"""Table-driven tests of the rules contract: every row, every clear reason, ties and boundaries.

Unless a row says otherwise: Europe/London, Thursday 2026-11-26 (GMT, so UTC is local time),
zone controlled Mon-Sat 08:30-18:30, grace 10, observation 5, bay B1 `paid` with a 240 minute
maximum stay. Expected alerts: (kind, bay, raised_at, status, cleared_at, clear_reason), instants
as day-of-month + time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.collector.rules_builders import Journal, at, make_site, replay

PAID: dict[str, Any] = {}
LIMITED: dict[str, Any] = {"kind": "limited"}  # needs no right: overstay only
FREE: dict[str, Any] = {"kind": "free", "max_stay": None}  # neither right nor maximum stay
PAID_NO_MAX: dict[str, Any] = {"max_stay": None}

Row = tuple[str, dict[str, Any], Callable[[Journal], Journal], str | None, list[tuple[Any, ...]]]

ROWS: list[Row] = [
    # ---- overstay: s + max_stay + grace, present and in P ---------------------------------
    (
        "overstay raised at s+max+grace, cleared when the vehicle leaves",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 14:00"),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T14:00", "vehicle_left")],
    ),
    (
        "overstay: leaving exactly at the due instant prevents it",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 13:10"),
        None,
        [],
    ),
    (
        "overstay: leaving 1 ms before the due instant prevents it",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 13:09:59.999"),
        None,
        [],
    ),
    (
        "overstay: leaving 1 ms after the due instant does not",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 13:10:00.001"),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T13:10:00.001", "vehicle_left")],
    ),
    (
        "overstay: parked before controlled hours counts from the period start",
        LIMITED,
        lambda j: j.park("2026-11-26 07:00", "2026-11-26 13:00"),
        None,
        [("overstay", "B1", "26T12:40", "cleared", "26T13:00", "vehicle_left")],
    ),
    (
        "overstay: due exactly when the period ends is not raised",
        LIMITED,
        lambda j: j.park("2026-11-26 14:20", "2026-11-26 19:00"),
        None,
        [],
    ),
    (
        "overstay: due 1 ms before the period ends is raised, then cleared as it ends",
        LIMITED,
        lambda j: j.park("2026-11-26 14:19:59.999", "2026-11-26 19:00"),
        None,
        [
            (
                "overstay",
                "B1",
                "26T18:29:59.999",
                "cleared",
                "26T18:30",
                "restriction_ended",
            )
        ],
    ),
    (
        "overstay: a period that ends with the alert open clears it (restriction_ended)",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 10:00"),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T18:30", "restriction_ended")],
    ),
    (
        "overstay: a stay spanning two periods gets one alert per period",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 13:00"),
        None,
        [
            ("overstay", "B1", "26T13:10", "cleared", "26T18:30", "restriction_ended"),
            ("overstay", "B1", "27T12:40", "cleared", "27T13:00", "vehicle_left"),
        ],
    ),
    (
        "overstay: none outside controlled hours (Sunday)",
        LIMITED,
        lambda j: j.park("2026-11-29 08:00", "2026-11-29 20:00"),
        None,
        [],
    ),
    (
        "overstay: an occupied event while occupied changes nothing",
        LIMITED,
        lambda j: (
            j.park("2026-11-26 09:00")
            .occ("2026-11-26 12:00", "occupied")
            .occ("2026-11-26 14:00", "vacant")
        ),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T14:00", "vehicle_left")],
    ),
    (
        "overstay: the bay going unknown ends the session (sensor_unknown)",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00").occ("2026-11-26 14:00", "unknown"),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T14:00", "sensor_unknown")],
    ),
    (
        "overstay: a new session after unknown starts its own clock",
        LIMITED,
        lambda j: (
            j.park("2026-11-26 09:00")
            .occ("2026-11-26 11:00", "unknown")
            .occ("2026-11-26 11:30", "occupied")
            .occ("2026-11-26 16:00", "vacant")
        ),
        None,
        [("overstay", "B1", "26T15:40", "cleared", "26T16:00", "vehicle_left")],
    ),
    (
        "free bay: never an alert",
        FREE,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 20:00"),
        None,
        [],
    ),
    # ---- unpaid: s + observation, no right at any instant of [s, s+obs] -------------------
    (
        "unpaid raised after observation, cleared when the vehicle leaves",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 09:30"),
        None,
        [("unpaid", "B1", "26T09:05", "cleared", "26T09:30", "vehicle_left")],
    ),
    (
        "unpaid: parked before hours, observed from the period start",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 07:00", "2026-11-26 09:30"),
        None,
        [("unpaid", "B1", "26T08:35", "cleared", "26T09:30", "vehicle_left")],
    ),
    (
        "unpaid: payment during the observation window prevents it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 10:00").right(
            "p1", "2026-11-26 09:03", "2026-11-26 11:00"
        ),
        None,
        [],
    ),
    (
        "unpaid: a right starting exactly at the due instant prevents it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 10:00").right(
            "p1", "2026-11-26 09:05", "2026-11-26 11:00"
        ),
        None,
        [],
    ),
    (
        "unpaid: a right starting 1 ms late clears it (right_added)",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 10:00").right(
            "p1", "2026-11-26 09:05:00.001", "2026-11-26 11:00"
        ),
        None,
        [("unpaid", "B1", "26T09:05", "cleared", "26T09:05:00.001", "right_added")],
    ),
    (
        "unpaid: a right that ended exactly at s does not count",
        PAID_NO_MAX,
        lambda j: j.right("p1", "2026-11-26 07:00", "2026-11-26 08:30").park(
            "2026-11-26 07:00", "2026-11-26 09:00"
        ),
        None,
        [("unpaid", "B1", "26T08:35", "cleared", "26T09:00", "vehicle_left")],
    ),
    (
        "unpaid: a right covering only s counts (closed window)",
        PAID_NO_MAX,
        lambda j: j.right("p1", "2026-11-26 07:00", "2026-11-26 08:30:00.001").park(
            "2026-11-26 07:00", "2026-11-26 08:40"
        ),
        None,
        [],
    ),
    (
        "unpaid: leaving at the due instant prevents it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 09:05"),
        None,
        [],
    ),
    (
        "unpaid: payment after the alert clears it, and its lapse raises expired",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 11:00").right(
            "p1", "2026-11-26 09:20", "2026-11-26 10:20"
        ),
        None,
        [
            ("unpaid", "B1", "26T09:05", "cleared", "26T09:20", "right_added"),
            ("expired", "B1", "26T10:30", "cleared", "26T11:00", "vehicle_left"),
        ],
    ),
    (
        "unpaid: one per period; a new period observes again",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 18:00", "2026-11-27 09:00"),
        None,
        [
            ("unpaid", "B1", "26T18:05", "cleared", "26T18:30", "restriction_ended"),
            ("unpaid", "B1", "27T08:35", "cleared", "27T09:00", "vehicle_left"),
        ],
    ),
    (
        "unpaid: resident bays need a right too; limited bays do not",
        {"kind": "resident", "max_stay": None},
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 09:30"),
        None,
        [("unpaid", "B1", "26T09:05", "cleared", "26T09:30", "vehicle_left")],
    ),
    (
        "unpaid: period ends at the due instant, not raised",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 18:25", "2026-11-26 19:00"),
        None,
        [],
    ),
    # ---- expired: e + grace, e > s, nothing else covers e, not covered at e + grace -------
    (
        "expired: a payment that lapses while the vehicle stays",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 12:00").right(
            "p1", "2026-11-26 09:00", "2026-11-26 10:00"
        ),
        None,
        [("expired", "B1", "26T10:10", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: leaving at e + grace prevents it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 10:10").right(
            "p1", "2026-11-26 09:00", "2026-11-26 10:00"
        ),
        None,
        [],
    ),
    (
        "expired: a right extended by id (same start, later in the journal)",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 11:00")
        ),
        None,
        [("expired", "B1", "26T11:10", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: a right shortened by id",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 11:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 09:30")
        ),
        None,
        [("expired", "B1", "26T09:40", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: a right extended by id after it lapsed clears the alert",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
            .right("p1", "2026-11-26 10:20", "2026-11-26 13:00")
        ),
        None,
        [("expired", "B1", "26T10:10", "cleared", "26T10:20", "right_added")],
    ),
    (
        "expired: a right replaced by a version that starts earlier holds from that start",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 10:00", "2026-11-26 11:00")
            .right("p1", "2026-11-26 08:55", "2026-11-26 10:30")
        ),
        None,
        [("expired", "B1", "26T10:40", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: a right replaced by a version that starts later holds until that start",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 08:55", "2026-11-26 09:30")
            .right("p1", "2026-11-26 10:00", "2026-11-26 11:00")
        ),
        None,
        [
            ("expired", "B1", "26T09:40", "cleared", "26T10:00", "right_added"),
            ("expired", "B1", "26T11:10", "cleared", "26T12:00", "vehicle_left"),
        ],
    ),
    (
        "expired: a right that starts as the other ends leaves no gap",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
            .right("p2", "2026-11-26 10:00", "2026-11-26 11:00")
        ),
        None,
        [("expired", "B1", "26T11:10", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: an end covered by another right raises nothing for that end",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
            .right("p2", "2026-11-26 10:00", "2026-11-26 10:05")
        ),
        None,
        [("expired", "B1", "26T10:15", "cleared", "26T12:00", "vehicle_left")],
    ),
    (
        "expired: covered again before e + grace is not raised for that e",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 10:30")
            .right("p1", "2026-11-26 09:00", "2026-11-26 10:00")
            .right("p2", "2026-11-26 10:05", "2026-11-26 13:00")
        ),
        None,
        [],
    ),
    (
        "expired: a right ending at s gives unpaid, not expired",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 07:00", "2026-11-26 09:00").right(
            "p1", "2026-11-26 07:00", "2026-11-26 08:30"
        ),
        None,
        [("unpaid", "B1", "26T08:35", "cleared", "26T09:00", "vehicle_left")],
    ),
    (
        "expired: due as the period ends is not raised",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 17:00", "2026-11-26 19:00").right(
            "p1", "2026-11-26 17:00", "2026-11-26 18:20"
        ),
        None,
        [],
    ),
    (
        "expired: a period ending while it is open clears it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 17:00", "2026-11-26 19:00").right(
            "p1", "2026-11-26 17:00", "2026-11-26 18:00"
        ),
        None,
        [("expired", "B1", "26T18:10", "cleared", "26T18:30", "restriction_ended")],
    ),
    (
        "zone-wide right covers every bay of the zone",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .park("2026-11-26 09:30", "2026-11-26 12:00", bay="B2")
            .right("z1", "2026-11-26 08:00", "2026-11-26 10:00", bay=None, zone="Z1")
        ),
        None,
        [
            ("expired", "B1", "26T10:10", "cleared", "26T12:00", "vehicle_left"),
            ("expired", "B2", "26T10:10", "cleared", "26T12:00", "vehicle_left"),
        ],
    ),
    (
        "zone-wide right clears open unpaid alerts of every bay (right_added)",
        PAID_NO_MAX,
        lambda j: (
            j.park("2026-11-26 09:00", "2026-11-26 12:00")
            .park("2026-11-26 09:30", "2026-11-26 12:00", bay="B2")
            .right("z1", "2026-11-26 10:00", "2026-11-26 13:00", bay=None, zone="Z1")
        ),
        None,
        [
            ("unpaid", "B1", "26T09:05", "cleared", "26T10:00", "right_added"),
            ("unpaid", "B2", "26T09:35", "cleared", "26T10:00", "right_added"),
        ],
    ),
    (
        "a bay right does not cover the bay beside it",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 10:00", bay="B2").right(
            "p1", "2026-11-26 08:00", "2026-11-26 12:00", bay="B1"
        ),
        None,
        [("unpaid", "B2", "26T09:05", "cleared", "26T10:00", "vehicle_left")],
    ),
    # ---- suspended: max(arrival, run start) + observation, present, in the run ------------
    (
        "suspended: raised after observation, cleared when the run ends",
        FREE,
        lambda j: j.suspend("s1", "2026-11-26 10:00", "2026-11-26 12:00").park(
            "2026-11-26 09:00", "2026-11-26 13:00"
        ),
        None,
        [("suspended", "B1", "26T10:05", "cleared", "26T12:00", "suspension_ended")],
    ),
    (
        "suspended: arriving during the run counts from arrival",
        FREE,
        lambda j: j.suspend("s1", "2026-11-26 10:00", "2026-11-26 12:00").park(
            "2026-11-26 10:30", "2026-11-26 11:00"
        ),
        None,
        [("suspended", "B1", "26T10:35", "cleared", "26T11:00", "vehicle_left")],
    ),
    (
        "suspended: the run ending at the due instant prevents it",
        FREE,
        lambda j: j.suspend("s1", "2026-11-26 10:00", "2026-11-26 10:05").park(
            "2026-11-26 09:00", "2026-11-26 13:00"
        ),
        None,
        [],
    ),
    (
        "suspended: overlapping suspensions merge into one run, one alert",
        FREE,
        lambda j: (
            j.suspend("s1", "2026-11-26 10:00", "2026-11-26 11:00")
            .suspend("s2", "2026-11-26 10:30", "2026-11-26 12:00")
            .park("2026-11-26 09:00", "2026-11-26 13:00")
        ),
        None,
        [("suspended", "B1", "26T10:05", "cleared", "26T12:00", "suspension_ended")],
    ),
    (
        "suspended: a suspension replaced by a version that starts earlier holds from that start",
        PAID_NO_MAX,
        lambda j: (
            j.suspend("s1", "2026-11-26 10:00", "2026-11-26 11:00")
            .suspend("s1", "2026-11-26 09:30", "2026-11-26 10:30")
            .park("2026-11-26 09:00", "2026-11-26 12:00")
            .right("p1", "2026-11-26 08:00", "2026-11-26 13:00")
        ),
        None,
        [("suspended", "B1", "26T09:35", "cleared", "26T10:30", "suspension_ended")],
    ),
    (
        "suspended: touching suspensions merge too",
        FREE,
        lambda j: (
            j.suspend("s1", "2026-11-26 10:00", "2026-11-26 11:00")
            .suspend("s2", "2026-11-26 11:00", "2026-11-26 12:00")
            .park("2026-11-26 09:00", "2026-11-26 13:00")
        ),
        None,
        [("suspended", "B1", "26T10:05", "cleared", "26T12:00", "suspension_ended")],
    ),
    (
        "suspended: separate runs (1 ms apart) give one alert each",
        FREE,
        lambda j: (
            j.suspend("s1", "2026-11-26 10:00", "2026-11-26 11:00")
            .suspend("s2", "2026-11-26 11:00:00.001", "2026-11-26 12:00")
            .park("2026-11-26 09:00", "2026-11-26 13:00")
        ),
        None,
        [
            ("suspended", "B1", "26T10:05", "cleared", "26T11:00", "suspension_ended"),
            ("suspended", "B1", "26T11:05:00.001", "cleared", "26T12:00", "suspension_ended"),
        ],
    ),
    (
        "suspended: whatever the hours (a Sunday) and whatever rights",
        FREE,
        lambda j: (
            j.suspend("s1", "2026-11-29 10:00", "2026-11-29 12:00")
            .right("p1", "2026-11-29 09:00", "2026-11-29 13:00")
            .park("2026-11-29 09:00", "2026-11-29 11:00")
        ),
        None,
        [("suspended", "B1", "29T10:05", "cleared", "29T11:00", "vehicle_left")],
    ),
    # ---- precedence of clear reasons at one instant ---------------------------------------
    (
        "vehicle_left beats restriction_ended at the same instant",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-26 18:30"),
        None,
        [("overstay", "B1", "26T13:10", "cleared", "26T18:30", "vehicle_left")],
    ),
    (
        "restriction_ended beats right_added at the same instant",
        PAID_NO_MAX,
        lambda j: j.park("2026-11-26 18:00", "2026-11-26 19:00").right(
            "p1", "2026-11-26 18:30", "2026-11-26 20:00"
        ),
        None,
        [("unpaid", "B1", "26T18:05", "cleared", "26T18:30", "restriction_ended")],
    ),
    (
        "vehicle_left beats right_added even when the right comes first in the journal",
        PAID_NO_MAX,
        lambda j: (
            j.occ("2026-11-26 09:00", "occupied")
            .right("p1", "2026-11-26 09:30", "2026-11-26 20:00")
            .occ("2026-11-26 09:30", "vacant")
        ),
        None,
        [("unpaid", "B1", "26T09:05", "cleared", "26T09:30", "vehicle_left")],
    ),
    (
        "vehicle_left beats sensor_unknown even when the unknown comes first in the journal",
        PAID_NO_MAX,
        lambda j: (
            j.occ("2026-11-26 09:00", "occupied")
            .occ("2026-11-26 09:30", "unknown")
            .occ("2026-11-26 09:30", "vacant")
        ),
        None,
        [("unpaid", "B1", "26T09:05", "cleared", "26T09:30", "vehicle_left")],
    ),
    (
        "a run ending and a right starting at one instant each clear their own alert",
        PAID_NO_MAX,
        lambda j: (
            j.suspend("s1", "2026-11-26 07:00", "2026-11-26 09:30")
            .park("2026-11-26 09:00", "2026-11-26 10:00")
            .right("p1", "2026-11-26 09:30", "2026-11-26 20:00")
        ),
        None,
        [
            ("suspended", "B1", "26T09:05", "cleared", "26T09:30", "suspension_ended"),
            ("unpaid", "B1", "26T09:05", "cleared", "26T09:30", "right_added"),
        ],
    ),
    # ---- --until ---------------------------------------------------------------------------
    (
        "--until: status as of until (still open), later alerts left out",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 13:00"),
        "2026-11-26 14:00",
        [("overstay", "B1", "26T13:10", "open", None, None)],
    ),
    (
        "--until exactly at the due instant includes the alert",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 13:00"),
        "2026-11-26 13:10",
        [("overstay", "B1", "26T13:10", "open", None, None)],
    ),
    (
        "--until 1 ms before the due instant does not",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00", "2026-11-27 13:00"),
        "2026-11-26 13:09:59.999",
        [],
    ),
    (
        "default until is the latest record: an alert due later is not printed",
        LIMITED,
        lambda j: j.park("2026-11-26 09:00").occ("2026-11-26 12:00", "vacant", bay="B2"),
        None,
        [],
    ),
]


@pytest.mark.parametrize(
    ("site_kwargs", "build", "until", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_rules_table(
    site_kwargs: dict[str, Any],
    build: Callable[[Journal], Journal],
    until: str | None,
    expected: list[tuple[Any, ...]],
) -> None:
    assert replay(make_site(**site_kwargs), build(Journal()), until) == expected


def test_output_sorts_by_raised_at_then_bay_then_kind_as_text() -> None:
    journal = (
        Journal()
        .suspend("s1", "2026-11-26 08:00", "2026-11-26 12:00", bays=("B1", "B2"))
        .park("2026-11-26 09:00", "2026-11-26 10:00", bay="B2")
        .park("2026-11-26 09:00", "2026-11-26 10:00", bay="B1")
    )
    got = replay(make_site(max_stay=None), journal)
    assert [(g[0], g[1]) for g in got] == [
        ("suspended", "B1"),
        ("unpaid", "B1"),
        ("suspended", "B2"),
        ("unpaid", "B2"),
    ]


def test_until_after_everything_keeps_alerts_open() -> None:
    journal = Journal().park("2026-11-26 09:00")
    got = replay(make_site(kind="limited"), journal, "2026-11-26 20:00")
    assert got == [("overstay", "B1", "26T13:10", "cleared", "26T18:30", "restriction_ended")]
    assert at("2026-11-26 20:00") > at("2026-11-26 18:30")
