"""What the HTTP API needs from the collector: one object, called from the collector's loop.

``kerbside.collector.service.CollectorService`` implements this; tests may pass any object that
does. Records are the documented dict shapes (the alert record of docs/rules.md, bay dicts),
instants inside those dicts are ISO strings, instants passed as arguments are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class NotFoundError(Exception):
    """Fallback for the service's ``NotFound`` (an unknown id)."""


class RecordRejectedError(Exception):
    """Fallback for the service's ``RecordRejected(reason, field)``."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


Page = tuple[list[dict[str, Any]], str | None]


class ApiService(Protocol):
    """The methods of CollectorService the API uses (see /work/notes/api.md)."""

    @property
    def site(self) -> Any: ...

    @property
    def bay_origins(self) -> Mapping[str, int]:
        """When each bay came into being (epoch ms); bays without one never existed."""
        ...

    async def post_right(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete_right(self, right_id: str) -> dict[str, Any]: ...

    async def post_suspension(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def ack_alert(
        self, alert_id: str, officer: str, outcome: str | None, note: str | None
    ) -> dict[str, Any]: ...

    async def resolve_alert(
        self, alert_id: str, officer: str, outcome: str, note: str | None
    ) -> dict[str, Any]: ...

    def bays(
        self, zone_id: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page: ...

    def bay(self, bay_id: str) -> dict[str, Any] | None: ...

    def sessions(
        self,
        bay_id: str,
        start: int | None,
        end: int | None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page: ...

    def alerts(
        self,
        status: str | None = None,
        zone: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def alert_changes_since(
        self, after: int, limit: int = 100
    ) -> list[tuple[int, dict[str, Any]]]: ...

    def last_alert_change_id(self) -> int: ...

    def gateways(self) -> list[dict[str, Any]]: ...

    async def wait_alert_change(self, after: int, timeout: float) -> None: ...  # noqa: ASYNC109

    def state_changes(
        self, zone_id: str | None, start: int, end: int
    ) -> dict[str, list[tuple[int, str]]]: ...

    def metrics(self) -> dict[str, Any]: ...

    def healthz(self) -> dict[str, Any]: ...

    def suspended_bays(self, now: int) -> set[str]: ...
