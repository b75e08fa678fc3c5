"""Gateways: who is online and whether every event each one sent has arrived."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from kerbside.collector.api.deps import Analyst, QueriesDep

router = APIRouter(prefix="/api/v1", tags=["gateways"])


class Gateway(BaseModel):
    gateway_id: str
    online: bool
    last_seen: str | None
    events: int
    epochs: int
    first_seq: int | None
    last_seq: int | None
    missing_seq: int


@router.get(
    "/gateways",
    response_model=list[Gateway],
    summary="Gateways: online, last seen, events journaled, first/last seq, seq gaps",
)
async def gateways(queries: QueriesDep, _: Analyst) -> list[Gateway]:
    # A scan of the journal on the store's file: run off the collector's loop.
    rows = await asyncio.to_thread(queries.gateways)
    return [Gateway(**row) for row in rows]
