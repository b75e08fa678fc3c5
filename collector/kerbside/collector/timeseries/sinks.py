"""Where time-series lines go: one interface, two real InfluxDB writers.

A sink writes one batch synchronously and says how it went, by returning or by raising
``RetryableWriteError`` / ``RejectedWriteError``. It keeps no queue of its own: the spool is the
queue, and a batch leaves the spool only after its sink returned.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from kerbside.collector.timeseries.errors import RejectedWriteError, RetryableWriteError

# Status codes that name the content of the batch, not the server's condition.
_CONTENT_STATUSES = frozenset({400, 413, 422})


class TimeSeriesSink(ABC):
    """Writes batches of line protocol (millisecond timestamps) to a time-series database."""

    @abstractmethod
    def write(self, lines: Sequence[str]) -> None:
        """Store ``lines`` or raise RetryableWriteError / RejectedWriteError (one thread calls)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sinks hold nothing
        """Release connections."""

    @property
    @abstractmethod
    def target(self) -> str:
        """Where the points go, for logs (never includes a secret)."""


def _short(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return " ".join(text.split())[:300]


class InfluxV1Sink(TimeSeriesSink):
    """InfluxDB 1.x (and anything speaking its ``/write``): HTTP POST with the standard library.

    The collector needs nothing beyond ``urllib`` for this: one request per batch, keep-alive is
    not worth a dependency at a few requests a second.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        params = {"db": database, "precision": "ms"}
        if retention_policy:
            params["rp"] = retention_policy
        self._url = url.rstrip("/") + "/write?" + urllib.parse.urlencode(params)
        self._target = f"{url.rstrip('/')} db={database}" + (
            f" rp={retention_policy}" if retention_policy else ""
        )
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._timeout = timeout_s

    @property
    def target(self) -> str:
        return self._target

    def write(self, lines: Sequence[str]) -> None:
        body = "\n".join(lines).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the URL scheme comes from the operator's config
            self._url, data=body, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = _short(exc.read() or b"")
            exc.close()
            if exc.code in _CONTENT_STATUSES:
                raise RejectedWriteError(exc.code, detail) from exc
            raise RetryableWriteError(f"HTTP {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad status lines
            raise RetryableWriteError(f"{type(exc).__name__}: {exc}") from exc


class InfluxV2Sink(TimeSeriesSink):
    """InfluxDB 2.x / 3.x (or any ``/api/v2/write``) through ``influxdb-client``, synchronous.

    The client's own batching is not used: it would hold points in memory outside the spool and
    retry on its own schedule. Synchronous writes from the spool's thread keep one source of
    truth for what is stored.
    """

    def __init__(
        self, url: str, token: str, org: str, bucket: str, timeout_s: float = 10.0
    ) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415 - heavy import, only if used
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

        self._client: Any = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)
        self._org = org
        self._bucket = bucket
        self._target = f"{url.rstrip('/')} org={org} bucket={bucket}"

    @property
    def target(self) -> str:
        return self._target

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415
        from influxdb_client.rest import ApiException  # noqa: PLC0415

        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record="\n".join(lines),
                write_precision=WritePrecision.MS,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = _short(str(exc.body or exc.reason or ""))
            if status in _CONTENT_STATUSES:
                raise RejectedWriteError(status, detail) from exc
            raise RetryableWriteError(f"HTTP {status}: {detail}") from exc
        except Exception as exc:  # urllib3 connection errors, timeouts
            raise RetryableWriteError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
