"""The collector's errors: one root, and a class per way a request or a write can fail.

The API registers a handler per class (403, 404, 409, 422, 503); the ingest path counts a
``RecordRejected`` by its ``reason`` and dead-letters the message.
"""

from __future__ import annotations


class CollectorError(Exception):
    """The root of every error the collector raises on purpose."""


class RecordRejected(CollectorError):  # noqa: N818 (a verdict on a record, not a failure)
    """A record the collector refuses. ``reason`` is a counter key (``records.REJECT_REASONS``),
    ``field`` the offending key when there is one."""

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.detail = f"{field}: {detail}" if field else detail
        super().__init__(f"{reason}: {self.detail}")


class NotFound(CollectorError):  # noqa: N818 (the API maps it to 404)
    """No such alert, right or bay."""


class NotOwner(CollectorError):  # noqa: N818 (the API maps it to 403)
    """A provider acted on a right another provider's token created."""


class AlertClosed(CollectorError):  # noqa: N818 (the API maps it to 409)
    """An officer acted on an alert that is cleared or resolved already (the API's 409)."""


class StoreError(CollectorError):
    """The store cannot be opened, read or written (disk full, locked, unreadable file)."""


class StoreRefused(StoreError):  # noqa: N818 (a verdict on the store, like DamagedStoreError)
    """The store will not be used as it is: its database cannot be reached at start, or its
    schema is not this collector's (to migrate, or from a newer collector). Restarting will not
    help until someone acts."""


class DamagedStoreError(StoreError):
    """The store's file is not a database, or its pages are damaged: starting again will not
    help (restore a backup, or move the file aside to start afresh)."""


class LeaseLost(StoreError):  # noqa: N818 (a verdict on the unit of work, like StoreRefused)
    """With several collectors: a unit of work written under a lease that is no longer this
    collector's (its lease ran out and another collector took the zone); nothing was written."""

    def __init__(self, message: str, leases: frozenset[str]) -> None:
        super().__init__(message)
        self.leases = leases


class RacedEvent(StoreError):  # noqa: N818
    """With several collectors: another collector stored one of the batch's events first (the
    broker delivered it twice, to two of them); nothing was written, and the batch is taken
    again, that event now a known duplicate."""
