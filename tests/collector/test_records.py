"""Validation of occupancy events, rights and suspensions (docs/protocols.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.collector.errors import RecordRejected
from kerbside.collector.records import (
    MAX_JSON_DEPTH,
    MAX_PAYLOAD_BYTES,
    REJECT_REASONS,
    MemorySeenEvents,
    OccupancyEvent,
    RecordValidator,
    Right,
    Suspension,
    event_fingerprint,
    from_journal_dict,
    json_depth,
    to_journal_dict,
)
from tests.collector.rules_builders import at, make_site

SITE = make_site()


def event(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "event_id": "gw1:7f3a9c:42",
        "gateway_id": "gw1",
        "seq": 42,
        "bay_id": "B1",
        "sensor_id": "S1",
        "state": "occupied",
        "ts": "2026-11-26T08:00:05.120Z",
        "confirmed_ts": "2026-11-26T08:00:15.130Z",
        "reason": None,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_a_good_event_is_accepted_typed() -> None:
    got = RecordValidator(SITE).check_event(json.dumps(event()).encode(), "gw1")
    assert got == OccupancyEvent(
        "gw1:7f3a9c:42",
        "gw1",
        42,
        "B1",
        "S1",
        "occupied",
        at("2026-11-26 08:00:05.120"),
        at("2026-11-26 08:00:15.130"),
        None,
    )


REJECTIONS: list[tuple[str, bytes, str | None, str, str | None]] = [
    ("not UTF-8", b'{"v": 1, "x": "\xff"}', None, "not_utf8", None),
    ("not JSON", b"{v: 1", None, "not_json", None),
    ("not an object", b"[1, 2]", None, "schema", None),
    ("too large", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", None, "too_large", None),
    ("no version", json.dumps(event(v=...)).encode(), None, "schema", "v"),
    ("unknown version", json.dumps(event(v=2)).encode(), None, "unknown_version", "v"),
    ("version of the wrong type", json.dumps(event(v="1")).encode(), None, "schema", "v"),
    ("missing event_id", json.dumps(event(event_id=...)).encode(), None, "schema", "event_id"),
    ("bad state", json.dumps(event(state="parked")).encode(), None, "schema", "state"),
    ("bool seq", json.dumps(event(seq=True)).encode(), None, "schema", "seq"),
    ("negative seq", json.dumps(event(seq=-1)).encode(), None, "schema", "seq"),
    ("bad ts", json.dumps(event(ts="yesterday")).encode(), None, "schema", "ts"),
    ("ts without zone", json.dumps(event(ts="2026-11-26T08:00:00")).encode(), None, "schema", "ts"),
    (
        "reason on an occupied event",
        json.dumps(event(reason="sensor_fault")).encode(),
        None,
        "schema",
        "reason",
    ),
    ("bad bay id", json.dumps(event(bay_id="a b")).encode(), None, "schema", "bay_id"),
    ("unknown bay", json.dumps(event(bay_id="B9")).encode(), None, "unknown_bay", "bay_id"),
    (
        "bay of another gateway",
        json.dumps(event(bay_id="C1")).encode(),
        None,
        "wrong_gateway",
        "bay_id",
    ),
    (
        "gateway differs from the topic's",
        json.dumps(event()).encode(),
        "gw2",
        "gateway_mismatch",
        "gateway_id",
    ),
]


@pytest.mark.parametrize(
    ("payload", "topic_gateway", "reason", "field"),
    [pytest.param(*r[1:], id=r[0]) for r in REJECTIONS],
)
def test_rejections(
    payload: bytes, topic_gateway: str | None, reason: str, field: str | None
) -> None:
    seen = MemorySeenEvents()
    with pytest.raises(RecordRejected) as caught:
        RecordValidator(SITE, seen).check_event(payload, topic_gateway)
    assert caught.value.reason == reason
    assert caught.value.field == field
    assert len(seen) == 0  # only accepted events are remembered


def test_exactly_64_kib_is_accepted_size_wise() -> None:
    body = json.dumps(event(pad="x"))
    padded = body[:-1] + " " * (MAX_PAYLOAD_BYTES - len(body)) + "}"
    assert len(padded.encode()) == MAX_PAYLOAD_BYTES
    assert RecordValidator(SITE).check_event(padded.encode()) is not None


def test_unknown_event_with_reason_is_accepted() -> None:
    got = RecordValidator(SITE).check_event(
        json.dumps(event(state="unknown", reason="sensor_silent"))
    )
    assert got is not None
    assert got.reason == "sensor_silent"


def test_repeats_same_body_ignored_different_body_rejected() -> None:
    seen = MemorySeenEvents()
    validator = RecordValidator(SITE, seen)
    first = json.dumps(event())
    assert validator.check_event(first) is not None
    # Same body (keys in another order, plus a journal "type") is the same event: ignored.
    reordered = json.dumps({"type": "occupancy", **dict(reversed(list(event().items())))})
    assert validator.check_event(reordered) is None
    with pytest.raises(RecordRejected) as caught:
        validator.check_event(json.dumps(event(state="vacant")))
    assert caught.value.reason == "duplicate_conflict"
    assert seen.fingerprint_of("gw1:7f3a9c:42") == event_fingerprint(event())


def test_a_rejected_event_does_not_block_its_id() -> None:
    validator = RecordValidator(SITE)
    with pytest.raises(RecordRejected):
        validator.check_event(json.dumps(event(bay_id="B9")))
    assert validator.check_event(json.dumps(event())) is not None


RIGHT = {
    "type": "right",
    "right_id": "p1",
    "kind": "payment",
    "bay_id": "B1",
    "start": "2026-11-26T09:00:00Z",
    "end": "2026-11-26T10:00:00Z",
}
RIGHT_REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("both bay and zone", {"zone_id": "Z1"}, "schema", "bay_id"),
    ("neither bay nor zone", {"bay_id": None}, "schema", "bay_id"),
    ("unknown bay", {"bay_id": "B9"}, "unknown_bay", "bay_id"),
    ("unknown zone", {"bay_id": None, "zone_id": "Z9"}, "unknown_zone", "zone_id"),
    ("end equal to start", {"end": "2026-11-26T09:00:00Z"}, "schema", "end"),
    ("end before start", {"end": "2026-11-26T08:00:00Z"}, "schema", "end"),
    ("bad kind", {"kind": "voucher"}, "schema", "kind"),
    ("no id", {"right_id": ""}, "schema", "right_id"),
]


@pytest.mark.parametrize(
    ("changes", "reason", "field"), [pytest.param(*r[1:], id=r[0]) for r in RIGHT_REJECTIONS]
)
def test_right_rejections(changes: dict[str, Any], reason: str, field: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        RecordValidator(SITE).check_journal_line(json.dumps({**RIGHT, **changes}))
    assert (caught.value.reason, caught.value.field) == (reason, field)


def test_zone_right_and_suspension_accepted() -> None:
    validator = RecordValidator(SITE)
    zone_right = validator.check_right({**RIGHT, "bay_id": None, "zone_id": "Z1"})
    assert zone_right == Right(
        "p1", "payment", None, "Z1", at("2026-11-26 09:00"), at("2026-11-26 10:00")
    )
    suspension = validator.check_journal_line(
        json.dumps(
            {
                "type": "suspension",
                "suspension_id": "s1",
                "bay_ids": ["B1", "B2", "B1"],
                "start": "2026-11-26T09:00:00Z",
                "end": "2026-11-26T10:00:00Z",
                "reason": "streetworks",
            }
        )
    )
    assert suspension == Suspension(
        "s1", ("B1", "B2"), at("2026-11-26 09:00"), at("2026-11-26 10:00"), "streetworks"
    )


def test_suspension_with_one_unknown_bay_is_rejected() -> None:
    with pytest.raises(RecordRejected) as caught:
        RecordValidator(SITE).check_suspension(
            {
                "suspension_id": "s1",
                "bay_ids": ["B1", "B9"],
                "start": "2026-11-26T09:00:00Z",
                "end": "2026-11-26T10:00:00Z",
            }
        )
    assert (caught.value.reason, caught.value.field) == ("unknown_bay", "bay_ids[1]")


def test_unknown_journal_type() -> None:
    with pytest.raises(RecordRejected) as caught:
        RecordValidator(SITE).check_journal_line('{"type": "payment"}')
    assert (caught.value.reason, caught.value.field) == ("schema", "type")


def test_journal_dict_round_trip() -> None:
    validator = RecordValidator(SITE)
    records = [
        validator.check_event_obj(event()),
        validator.check_right(RIGHT),
        validator.check_right({**RIGHT, "bay_id": None, "zone_id": "Z1"}),
        validator.check_suspension(
            {"suspension_id": "s", "bay_ids": ["B2"], "start": RIGHT["start"], "end": RIGHT["end"]}
        ),
    ]
    for record in records:
        assert record is not None
        assert from_journal_dict(json.loads(json.dumps(to_journal_dict(record)))) == record


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_in_no_crash_out(payload: bytes) -> None:
    validator = RecordValidator(SITE)
    reasons = []
    for check in (validator.check_journal_line, validator.check_event):
        try:
            check(payload)
        except RecordRejected as exc:
            reasons.append(exc.reason)
    assert set(reasons) <= set(REJECT_REASONS)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ts": "0999-01-01T00:00:00Z"}, "ts"),  # once stored, it kept the collector from starting
        ({"ts": "2019-12-31T23:59:59.999Z"}, "ts"),
        ({"confirmed_ts": "1970-01-01T00:00:00Z"}, "confirmed_ts"),
        ({"ts": "2026-11-26T08:05:15.131Z"}, "ts"),  # 5 minutes and 1 ms ahead of the clock
        ({"confirmed_ts": "2027-01-01T00:00:00Z"}, "confirmed_ts"),
    ],
)
def test_instants_out_of_range_are_rejected(changes: dict[str, Any], field: str) -> None:
    received = at("2026-11-26 08:00:15.130")
    with pytest.raises(RecordRejected) as caught:
        RecordValidator(SITE).check_event(json.dumps(event(**changes)).encode(), "gw1", received)
    assert (caught.value.reason, caught.value.field) == ("ts_out_of_range", field)


def test_instants_up_to_five_minutes_ahead_and_from_2020_are_accepted() -> None:
    received = at("2026-11-26 08:00:15.130")
    ahead = event(ts="2026-11-26T08:05:15.130Z", confirmed_ts="2026-11-26T08:05:15.130Z")
    assert RecordValidator(SITE).check_event(json.dumps(ahead).encode(), "gw1", received)
    early = event(ts="2020-01-01T00:00:00Z", confirmed_ts="2020-01-01T00:00:10Z")
    assert RecordValidator(SITE).check_event(json.dumps(early).encode(), "gw1", received)


def test_a_journal_has_no_clock_but_still_no_event_before_2020() -> None:
    """Replay judges a journal's events by the lower bound alone (it has no receipt time)."""
    validator = RecordValidator(SITE)
    late = event(ts="2099-01-01T00:00:00Z", confirmed_ts="2099-01-01T00:00:10Z")
    future = {"type": "occupancy", **late}
    assert validator.check_journal_line(json.dumps(future)) is not None
    with pytest.raises(RecordRejected, match="ts_out_of_range"):
        validator.check_journal_line(
            json.dumps({"type": "occupancy", **event(event_id="e:old", ts="1999-01-01T00:00:00Z")})
        )


def _depth(value: Any) -> int:
    """json_depth by its definition, recursively."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_json_depth_is_how_deeply_a_parsed_value_nests(value: Any) -> None:
    parsed = json.loads(json.dumps(value))  # what a parser hands over: plain dicts and lists
    # counted exactly up to one level past the bound, where it stops
    assert json_depth(parsed) == min(_depth(parsed), MAX_JSON_DEPTH + 1)
