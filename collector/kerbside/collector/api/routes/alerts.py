"""Alerts: list, one with its history, the officer workflow, and the live stream (SSE).

Items are the alert record (docs/rules.md) plus, for a bay's alert, what an officer at the kerb
needs and the record does not carry (``Queries.alert_items``): the bay's kind and maximum stay
and the payment or permit held.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from kerbside.collector.api.deps import (
    CommandsDep,
    FeedDep,
    Officer,
    OfficerOrAnalyst,
    QueriesDep,
    still_allowed,
)
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import AckBody, Alert, AlertPage, ErrorBody, ResolveBody
from kerbside.collector.api.routes.bays import paged
from kerbside.collector.api.routes.common import Cursor, IdQuery, JsonText, Limit, page
from kerbside.collector.feed import AlertFeed
from kerbside.collector.queries import Queries

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(min_length=1, max_length=200)]
Status = Literal["open", "acknowledged", "cleared", "resolved"]
KindQuery = Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$", examples=["unpaid"])]
HEARTBEAT_S = 15.0
RECHECK_S = 2.0  # how often a stream checks that its caller is still signed in
STREAM_ROLES = frozenset({"officer", "admin"})
BATCH = 500
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the alert is closed already"}
}


@router.get("", response_model=AlertPage, summary="Alerts, filtered by status, zone and kind")
async def list_alerts(
    *,
    request: Request,
    queries: QueriesDep,
    feed: FeedDep,
    _: OfficerOrAnalyst,
    status: Status | None = None,
    zone: IdQuery = None,
    kind: KindQuery = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> JsonText:
    # Read the change id first: a client that lists then streams from it misses nothing.
    last = feed.last_id
    items, next_cursor = paged(
        lambda: queries.alerts(status=status, zone=zone, kind=kind, limit=limit, cursor=cursor)
    )
    response = page(queries.alert_items(items), next_cursor)
    response.headers["X-Last-Event-ID"] = str(last)
    return response


def _matches(record: dict[str, Any], zone: str | None, kind: str | None) -> bool:
    return (zone is None or record.get("zone_id") == zone) and (
        kind is None or record.get("kind") == kind
    )


class EventFrames:
    """Each change made into an item and serialised once however many clients receive it
    (fan-out to hundreds)."""

    def __init__(self, size: int = 4096) -> None:
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._size = size

    def frames(
        self,
        changes: list[tuple[int, dict[str, Any]]],
        items: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    ) -> list[str]:
        """The frames of ``changes``; ``items`` makes API items of the records not seen yet."""
        texts = {cid: self._cache.get(cid) for cid, _ in changes}
        fresh = [(cid, record) for cid, record in changes if texts[cid] is None]
        if fresh:
            made = items([record for _, record in fresh])
            for (cid, _), item in zip(fresh, made, strict=True):
                data = orjson.dumps(item).decode("utf-8")
                texts[cid] = self._cache[cid] = f"id: {cid}\nevent: alert\ndata: {data}\n\n"
                if len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return [text for text in texts.values() if text is not None]


async def _events(  # noqa: PLR0917 (the stream's request, sources and filters)
    request: Request,
    feed: AlertFeed,
    queries: Queries,
    after: int,
    zone: str | None,
    kind: str | None,
) -> AsyncIterator[str]:
    state = request.app.state
    frames: EventFrames = state.sse_frames
    loop = asyncio.get_running_loop()
    state.sse_clients += 1
    try:
        yield "retry: 2000\n\n"
        if after > feed.last_id:
            feed.catch_up()  # another collector's changes this one has not heard of yet
        if after > feed.last_id:
            # An id from before a store was wiped: the client must reload its list.
            after = feed.last_id
            yield f"id: {after}\nevent: reset\ndata: {{}}\n\n"
        quiet_since = check_at = loop.time()
        while True:
            if loop.time() >= check_at:
                # A token revoked, a session ended (on any collector) or expired: the stream
                # ends too, within RECHECK_S, and says why before it goes.
                if not still_allowed(request, STREAM_ROLES):
                    yield "event: signed-out\ndata: {}\n\n"
                    return
                check_at = loop.time() + RECHECK_S
            changes = feed.changes_since(after, limit=BATCH)
            if changes:
                wanted = [(cid, rec) for cid, rec in changes if _matches(rec, zone, kind)]
                out = frames.frames(wanted, queries.alert_items) if wanted else []
                after = changes[-1][0]
                if out:
                    yield "".join(out)
                    quiet_since = loop.time()
                continue
            await feed.wait(after, RECHECK_S)
            if loop.time() - quiet_since >= HEARTBEAT_S:
                yield ": keep-alive\n\n"
                quiet_since = loop.time()
    finally:
        state.sse_clients -= 1


@router.get(
    "/stream",
    summary="Live alert changes (server-sent events; Last-Event-ID resumes)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "event: alert"}},
)
async def stream(
    *,
    request: Request,
    feed: FeedDep,
    queries: QueriesDep,
    _: Officer,
    last_event_id: Annotated[
        str | None, Header(max_length=20, description="the last id received; resumes after it")
    ] = None,
    since: Annotated[
        int | None, Query(ge=0, description="change id to start after (X-Last-Event-ID of a list)")
    ] = None,
    zone: IdQuery = None,
    kind: KindQuery = None,
) -> StreamingResponse:
    after: int
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise FieldError(["header", "Last-Event-ID"], "expected a change id (digits)")
        after = int(last_event_id)
    elif since is not None:
        after = since
    else:
        after = feed.last_id
    return StreamingResponse(
        _events(request, feed, queries, after, zone, kind),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/{alert_id}", response_model=Alert, summary="One alert with its officer history")
async def get_alert(alert_id: AlertId, queries: QueriesDep, _: OfficerOrAnalyst) -> JsonText:
    record = queries.alert(alert_id)
    if record is None:
        raise FieldError(["path", "alert_id"], f"no alert {alert_id}", 404)
    return JsonText(queries.alert_items([record])[0])


@router.post(
    "/{alert_id}/ack", response_model=Alert, summary="Acknowledge an alert", responses=_CONFLICT
)
async def ack_alert(
    *,
    alert_id: AlertId,
    body: AckBody,
    queries: QueriesDep,
    commands: CommandsDep,
    officer: Officer,
) -> JsonText:
    if queries.alert(alert_id) is None:
        raise FieldError(["path", "alert_id"], f"no alert {alert_id}", 404)
    record = await commands.ack_alert(alert_id, officer.name, body.outcome, body.note)
    return JsonText(queries.alert_items([record])[0])


@router.post(
    "/{alert_id}/resolve",
    response_model=Alert,
    summary="Resolve an alert with the outcome",
    responses=_CONFLICT,
)
async def resolve_alert(
    *,
    alert_id: AlertId,
    body: ResolveBody,
    queries: QueriesDep,
    commands: CommandsDep,
    officer: Officer,
) -> JsonText:
    if queries.alert(alert_id) is None:
        raise FieldError(["path", "alert_id"], f"no alert {alert_id}", 404)
    record = await commands.resolve_alert(alert_id, officer.name, body.outcome, body.note)
    return JsonText(queries.alert_items([record])[0])
