"""Builders for writing rows to a real store through its one write, ``commit``."""

from __future__ import annotations

from typing import Any

from kerbside.collector.effects import AlertWrite, Effects, JournalRow, SessionStep
from kerbside.collector.store import Committed, Store, Work, dumps


def journal_row(
    type_: str,
    time: int,
    body: dict[str, Any],
    *,
    watermark: int = 0,
    event_id: str | None = None,
    digest: str | None = None,
    zone_id: str | None = None,
) -> JournalRow:
    return (type_, time, watermark, dumps(body), event_id, digest, zone_id)


def alert_write(record: dict[str, Any], raised_at: int) -> AlertWrite:
    return AlertWrite(record, raised_at, dumps(record))


def opened(bay_id: str, start: int) -> tuple[SessionStep, str, int, None]:
    return (SessionStep.OPEN, bay_id, start, None)


def closed(bay_id: str, start: int, end: int) -> tuple[SessionStep, str, int, int]:
    return (SessionStep.CLOSE, bay_id, start, end)


def counted(bay_id: str, start: int) -> tuple[SessionStep, str, int, None]:
    return (SessionStep.ALERT, bay_id, start, None)


def write(store: Store, **effects: Any) -> Committed:
    """Commit one unit of work made of ``effects`` (``Effects`` fields, lists welcome)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in effects.items()}
    return store.commit(Work(Effects(**fields)))
