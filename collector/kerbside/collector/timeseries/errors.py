"""Errors of the time-series writers: one root (under the collector's); retryable is a type."""

from __future__ import annotations

from kerbside.collector.errors import CollectorError


class TimeSeriesError(CollectorError):
    """Root of every error this package raises."""


class RetryableWriteError(TimeSeriesError):
    """The batch was not (or not surely) stored: InfluxDB down, timeout, 5xx, auth, no database.

    Resending the same lines is safe: a point with the same series and time overwrites itself.
    """


class RejectedWriteError(TimeSeriesError):
    """InfluxDB refused the batch's content (400, 413, 422): resending it unchanged never helps.

    With more than one line the culprit may be any of them (1.x stores the lines it could parse
    and reports the rest), so the caller splits the batch to find it.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
