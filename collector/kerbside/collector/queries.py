"""The API's read side: bays, sessions, alerts, occupancy history, health and metrics, from the
store (and the site), never from the core's memory, so any collector sharing the store can
answer them.

Records are the documented dict shapes (bay dicts, the alert record of docs/rules.md); instants
inside them are ISO strings, instants passed as arguments epoch milliseconds. A page is
``(items, next cursor)``; a cursor this side did not hand out raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from kerbside.collector.cycle import Sink
from kerbside.collector.errors import NotFound
from kerbside.collector.link import Transport
from kerbside.collector.records import Right
from kerbside.collector.right_held import right_held
from kerbside.collector.rules import NEG_INF
from kerbside.collector.store import Store
from kerbside.collector.telemetry import Telemetry
from kerbside.core.instants import Instant, format_instant, parse_instant
from kerbside.core.site import Bay, Site

Page = tuple[list[dict[str, Any]], str | None]


class CommitState(Protocol):
    @property
    def failing(self) -> bool: ...


class Backlog(Protocol):
    @property
    def pending(self) -> int: ...


class Health:
    """The parts ``/healthz`` reports: the broker link, the store's commits, the sink; among
    several collectors, which zones this one runs (``cluster``)."""

    def __init__(
        self,
        link: Transport,
        commits: CommitState,
        sink: Sink | None = None,
        cluster: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._link = link
        self._commits = commits
        self._sink = sink
        self._cluster = cluster

    def parts(self) -> dict[str, Any]:
        sink = "disabled"
        if self._sink is not None:
            sink = "ok" if self._sink.healthy() else "down"
        parts: dict[str, Any] = {
            "broker": "ok" if self._link.connected else "down",
            "store": "failing" if self._commits.failing else "ok",
            "sink": sink,
        }
        if self._cluster is not None:
            parts["cluster"] = self._cluster()
        return parts


# A cursor's number fits the store's integers (SQLite's and PostgreSQL's bigint); a longer one is
# not one this side handed out.
_CURSOR_DIGITS = 18


def _cursor_number(text: str, what: str) -> int:
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > _CURSOR_DIGITS:
        raise ValueError(f"expected {what}")
    return int(text)


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    offset = _cursor_number(cursor, "a number")
    if offset < 0:
        raise ValueError("expected a number")
    return offset


class Queries:
    def __init__(
        self,
        store: Store,
        site: Callable[[], Site],
        *,
        clock: Callable[[], Instant],
        health: Health,
        telemetry: Telemetry,
        outbox: Backlog,
        sink: Sink | None = None,
    ) -> None:
        self._store = store
        self._site = site
        self._clock = clock
        self._origins: tuple[Site, dict[str, Instant]] | None = None
        self._health = health
        self._telemetry = telemetry
        self._outbox = outbox
        self._sink = sink

    @property
    def site(self) -> Site:
        return self._site()

    def now(self) -> Instant:
        """The collector's clock (the wall's, or the test clock it runs on)."""
        return self._clock()

    def bay_origins(self) -> dict[str, Instant]:
        """When each bay of the site came into being (read again after a site reload)."""
        site = self._site()
        if self._origins is None or self._origins[0] is not site:
            self._origins = (site, self._store.bay_origins(site.bays))
        return self._origins[1]

    # -- bays -----------------------------------------------------------------------------------

    def bays(self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        site = self._site()
        bays = site.bays_of_zone(zone_id) if zone_id else tuple(site.bays.values())
        start = _offset(cursor)
        page = bays[start : start + limit]
        more = str(start + limit) if start + limit < len(bays) else None
        states = self._store.bay_states([b.id for b in page])
        return [_bay_dict(b, states.get(b.id)) for b in page], more

    def bay(self, bay_id: str) -> dict[str, Any] | None:
        bay = self._site().bays.get(bay_id)
        if bay is None:
            return None
        return _bay_dict(bay, self._store.bay_states([bay_id]).get(bay_id))

    def sessions(
        self,
        bay_id: str,
        start: Instant | None = None,
        end: Instant | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        bay = self._site().bays.get(bay_id)
        if bay is None:
            raise NotFound(f"no bay {bay_id}")
        after = None
        if cursor is not None:
            after = _cursor_number(cursor, "a session start")
        rows = self._store.sessions(bay_id, start, end, limit + 1, after)
        out = [
            {
                "bay_id": bay_id,
                "zone_id": bay.zone_id,
                "start": format_instant(s),
                "end": None if e is None else format_instant(e),
                "alerts": n,
            }
            for s, e, n in rows[:limit]
        ]
        return out, (str(rows[limit - 1][0]) if len(rows) > limit else None)

    def bay_ids(self, zone_id: str | None = None) -> list[str]:
        """The site's bays (of ``zone_id``, if given)."""
        site = self._site()
        return [b.id for b in site.bays_of_zone(zone_id)] if zone_id else list(site.bays)

    def timelines(
        self, bay_ids: list[str], start: Instant, end: Instant
    ) -> dict[str, list[tuple[Instant, str]]]:
        """Each bay's state at ``start`` and its changes until ``end``, read on a connection of
        the store's own: the API runs it in a worker thread, off the collector's loop."""
        return self._store.timelines(bay_ids, start, end)

    def suspended_bays(self, now: Instant) -> set[str]:
        """Bays a suspension covers at ``now``."""
        out: set[str] = set()
        for body in self._store.suspensions():
            if parse_instant(body["start"]) <= now < parse_instant(body["end"]):
                out.update(body["bay_ids"])
        return out

    # -- alerts ---------------------------------------------------------------------------------

    def alerts(
        self,
        status: str | None = None,
        zone: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        after = None
        if cursor is not None:
            raised, sep, alert_id = cursor.partition("|")
            if not sep:
                raise ValueError("expected raised|alert_id")
            after = (_cursor_number(raised, "raised|alert_id"), alert_id)
        rows = self._store.alerts(
            status=status, zone_id=zone, kind=kind, limit=limit + 1, after=after
        )
        page = rows[:limit]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = f"{parse_instant(last['raised_at'])}|{last['alert_id']}"
        return page, more

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self._store.alert_with_history(alert_id)
        if found is None:
            return None
        record, history = found
        return {**record, "history": history}

    def alert_items(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The API's alert items: each record as it is, plus for a bay's alert what an officer
        at the kerb needs and the record does not carry: the bay's ``bay_kind`` and
        ``max_stay_minutes`` (from the site), and the payment or permit held during the stay
        (``right_kind``, ``right_until``; null for none; right_held.py says which)."""
        site = self._site()
        now = self._clock()
        bays = [site.bays.get(r.get("bay_id") or "") for r in records]
        stays = [
            (parse_instant(r["session_start"]), _stay_end(r, now))
            if r.get("session_start")
            else None
            for r in records
        ]
        rights: dict[str, list[Right]] = {}
        wanted = [(bay, stay) for bay, stay in zip(bays, stays, strict=True) if bay and stay]
        if wanted:
            found = self._store.rights_for(
                {bay.id for bay, _ in wanted},
                {bay.zone_id for bay, _ in wanted},
                min(stay[0] for _, stay in wanted),
                max(stay[1] for _, stay in wanted),
            )
            for right in found:
                rights.setdefault(right.bay_id or "zone:" + (right.zone_id or ""), []).append(right)
        out = []
        for record, bay, stay in zip(records, bays, stays, strict=True):
            if bay is None:
                out.append(record)
                continue
            held = None
            if stay is not None:
                own = rights.get(bay.id, []) + rights.get("zone:" + bay.zone_id, [])
                held = right_held(own, *stay)
            out.append(
                {
                    **record,
                    "bay_kind": bay.kind,
                    "max_stay_minutes": bay.max_stay_minutes,
                    "right_kind": None if held is None else held.kind,
                    "right_until": None if held is None else format_instant(held.end),
                }
            )
        return out

    # -- gateways, health, metrics --------------------------------------------------------------

    def gateways(self) -> list[dict[str, Any]]:
        """Per-gateway delivery figures (GET /api/v1/gateways). A scan of the journal on a
        connection of its own: the API runs it in a worker thread, off the loop."""
        return self._store.gateway_summaries()

    def healthz(self) -> dict[str, Any]:
        report: dict[str, Any] = self._health.parts()
        watermark = self._store.watermark()
        # before the rules' clock first moves (the broker still handing over its backlog) it
        # stands at the beginning of time, which no ISO 8601 year can write
        started = watermark is not None and watermark > NEG_INF
        report["clock"] = None if watermark is None or not started else format_instant(watermark)
        return report

    def metrics(self) -> dict[str, Any]:
        """The numbers ``/metrics`` exports: stored counters (``events_in``, ``messages_in``,
        ``duplicates``, ``rejected`` and ``alerts`` by reason and kind), this process's latencies
        (``telemetry.LatencyCounts``), outstanding alerts and the sink's figures."""
        counters = self._store.counters()
        rejected = {k[9:]: float(v) for k, v in counters.items() if k.startswith("rejected.")}
        alerts = {k[7:]: float(v) for k, v in counters.items() if k.startswith("alerts.")}
        telemetry = self._telemetry
        out: dict[str, Any] = {
            "events_in": float(counters.get("events_in", 0)),
            "messages_in": float(counters.get("messages_in", 0)),
            "duplicates": float(counters.get("duplicates", 0)),
            "foreign_sensors": float(counters.get("foreign_sensor", 0)),
            "rejected": rejected,
            "alerts": alerts,
            "rule_latency": telemetry.rule_latency.counts(),
            "publish_latency": telemetry.publish_latency.counts(),
            "alerts_outstanding": self.outstanding_alerts(),
            "publish_pending": float(self._outbox.pending),
            "journal_skipped": float(telemetry.journal_skipped),
        }
        if self._sink is not None:
            out["sink"] = dict(self._sink.stats())
        return out

    def outstanding_alerts(self) -> dict[tuple[str, str, str], int]:
        """Alerts open or acknowledged, counted by (status, kind, zone); zone "" for an alert of
        no zone (a gateway's)."""
        counts: dict[tuple[str, str, str], int] = {}
        for status in ("open", "acknowledged"):
            after: tuple[int, str] | None = None
            while True:
                page = self._store.alerts(status=status, limit=1000, after=after)
                for record in page:
                    key = (status, str(record["kind"]), str(record.get("zone_id") or ""))
                    counts[key] = counts.get(key, 0) + 1
                if len(page) < 1000:
                    break
                last = page[-1]
                after = (parse_instant(last["raised_at"]), str(last["alert_id"]))
        return counts


def _stay_end(record: dict[str, Any], now: Instant) -> Instant:
    """Up to when the stay counts for the right held: the alert's end, or now."""
    cleared = record.get("cleared_at")
    return parse_instant(cleared) if cleared else now


def _bay_dict(
    bay: Bay, state: tuple[str, Instant, str | None, Instant | None] | None
) -> dict[str, Any]:
    return {
        "bay_id": bay.id,
        "zone_id": bay.zone_id,
        "street": bay.street,
        "kind": bay.kind,
        "location": None
        if bay.location is None
        else {"lat": bay.location.lat, "lon": bay.location.lon},
        "state": "unknown" if state is None else state[0],
        "since": None if state is None else format_instant(state[1]),
        "gateway_id": bay.gateway if state is None else state[2],
    }


def export_journal(store: Store) -> Iterator[dict[str, Any]]:
    """The accepted occupancy events, rights and suspensions as a journal (what ``replay``
    reads). A right cancelled later is exported as the cancellation left it: cut short at the
    cancellation, or left out when cancelled before it began (the collector forgot it then, and
    a journal has no record that forgets)."""
    cancels: dict[str, list[tuple[int, Instant]]] = {}
    for entry in store.journal(types=("right_cancel",)):
        body = entry.body
        cancels.setdefault(body["right_id"], []).append((entry.pos, int(body["at"])))
    for entry in store.journal(types=("occupancy", "right", "suspension")):
        body = entry.body
        later = cancels.get(body["right_id"]) if entry.type == "right" else None
        if later:
            end = parse_instant(body["end"])
            # every version posted before a cancellation stops at it, as the rules engine did
            cut = min([end, *(at for pos, at in later if pos > entry.pos)])
            if cut <= parse_instant(body["start"]):
                continue
            if cut < end:
                body = {**body, "end": format_instant(cut)}
        yield body
