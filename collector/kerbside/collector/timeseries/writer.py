"""The writer thread: spool -> InfluxDB, off the collector's event loop.

The collector's commits put the lines of their points into the spool themselves, in the same
transaction as their batch, and tell the writer how many (``spooled``): nothing acknowledged to
the broker has its points only in memory. ``submit`` (lines of no batch: zone occupancy when the
store will not take them) only appends to a list under a lock; the thread moves that buffer into
the spool. Either way ingest and alerts never wait for InfluxDB. The thread sends the spool's
head in batches: as soon as a batch is full, or when no line has come for ``flush_interval_s``
(the end of a burst: its last points do not wait), or ``MAX_WAIT_S`` after the first line of a
steady stream; and removes a batch only once the sink accepted it. Under a backlog it sends full
batches, few and large, rather than taking the GIL from the collector for many small ones. A
batch InfluxDB rejects is split in halves until the bad line is alone; that line is logged,
counted and removed, the others go through. While InfluxDB is unreachable the thread keeps
spooling and retries with a capped, jittered backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kerbside.collector.store import LineSpool
from kerbside.collector.store.spool import Spool
from kerbside.collector.timeseries.errors import RejectedWriteError, RetryableWriteError
from kerbside.collector.timeseries.sinks import TimeSeriesSink
from kerbside.core.backoff import Backoff

log = logging.getLogger(__name__)

# While lines keep coming, the oldest waits at most this long for a fuller batch.
MAX_WAIT_S = 1.0


@dataclass(frozen=True)
class WriterStats:
    spool_depth: int  # lines in the spool plus lines buffered for it
    points_written: int  # lines InfluxDB accepted (a resend after an unclear failure counts again)
    points_rejected: int  # lines InfluxDB refused for good (logged, removed)
    points_dropped: int  # lines dropped because the spool was at its bound
    write_errors: int  # failed write attempts (outages, timeouts, 5xx)
    connected: bool  # False after the last write attempt failed
    last_error: str | None
    spool_ok: bool = True  # False while lines cannot be written to the spool

    @property
    def healthy(self) -> bool:
        """Nothing is being lost: InfluxDB being away is not a fault while the spool holds."""
        return self.spool_ok and self.spool_depth < self.max_lines

    max_lines: int = 2_000_000

    def as_dict(self) -> dict[str, int | bool | str | None]:
        return {
            "spool_depth": self.spool_depth,
            "points_written": self.points_written,
            "points_rejected": self.points_rejected,
            "points_dropped": self.points_dropped,
            "write_errors": self.write_errors,
            "connected": self.connected,
            "influxdb_up": int(self.connected),  # numeric twin of `connected`, for /metrics
            "last_error": self.last_error,
        }


def write_splitting(sink: TimeSeriesSink, lines: Sequence[str]) -> tuple[int, int]:
    """Write ``lines``; when InfluxDB rejects the batch, split it in halves until each rejected
    line is alone, log and skip those. Returns (lines written, lines rejected).

    RetryableWriteError propagates: the caller keeps the whole batch and sends it again later
    (the halves already stored are overwritten by the same points, harmlessly).
    """
    try:
        sink.write(lines)
    except RejectedWriteError as exc:
        if len(lines) == 1:
            log.warning("InfluxDB rejected a point (%s); dropped it: %s", exc, lines[0][:300])
            return 0, 1
        middle = len(lines) // 2
        first = write_splitting(sink, lines[:middle])
        second = write_splitting(sink, lines[middle:])
        return first[0] + second[0], first[1] + second[1]
    return len(lines), 0


class SpoolWriter:
    """Owns the spool and a thread that drains it into a sink."""

    def __init__(
        self,
        sink: TimeSeriesSink,
        spool_path: str,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_lines: int = 2_000_000,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        close_drain_s: float = 5.0,
        open_spool: Callable[[], LineSpool] | None = None,
    ) -> None:
        self.sink = sink
        self._spool_path = spool_path
        self._open_spool = open_spool or (
            lambda: Spool(self._spool_path, self._max_lines, block=self._batch_size)
        )
        self._batch_size = batch_size
        self._flush_interval = flush_interval_s
        self._max_lines = max_lines
        self.backoff = Backoff(min_backoff_s, max_backoff_s)  # between failed writes
        self._close_drain = close_drain_s
        self._lock = threading.Condition(threading.Lock())
        self._buffer: list[str] = []
        self._appended = 0  # lines the store's commits put in the spool, not yet counted there
        self._last_told = 0.0  # when lines last came (monotonic)
        self._first_pending: float | None = None  # when the oldest line not yet taken came
        self._stopping = False
        self._flush_requested = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._spool_depth = 0
        self._written = 0
        self._rejected = 0
        self._dropped = 0
        self._errors = 0
        self._connected = True
        self._last_error: str | None = None
        self._spool_ok = True
        self._retry_at = 0.0

    # -- called from any thread -------------------------------------------------------------

    def start(self) -> None:
        """Open the spool (in the thread that will own it) and start draining it."""
        self._thread = threading.Thread(target=self._run, name="kerbside-timeseries", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def submit(self, lines: Sequence[str]) -> None:
        """Queue lines for the spool: O(len(lines)), never waits for I/O."""
        if not lines:
            return
        with self._lock:
            self._buffer.extend(lines)
            self._told()
            overflow = len(self._buffer) - self._max_lines
            if overflow > 0:  # the thread is stuck (disk?): keep memory bounded
                del self._buffer[:overflow]
                self._dropped += overflow
            if len(self._buffer) >= self._batch_size:
                self._lock.notify()

    def spooled(self, lines: int) -> None:
        """``lines`` more are in the spool (a commit wrote them): never waits for I/O."""
        if lines <= 0:
            return
        with self._lock:
            self._appended += lines
            self._told()

    def _told(self) -> None:
        """Lines are pending (the lock held): note when, wake the thread for a full batch."""
        self._last_told = time.monotonic()
        if self._first_pending is None:
            # The first line of a burst: the thread may be waiting for its next look at the
            # spool (up to MAX_WAIT_S away); it waits for the burst's end instead.
            self._first_pending = self._last_told
            self._lock.notify()
        elif self._appended + len(self._buffer) >= self._batch_size:
            self._lock.notify()

    def flush_soon(self) -> None:
        """Wake the thread to spool and send what is buffered now (tests, shutdown)."""
        with self._lock:
            self._flush_requested = True
            self._lock.notify()

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                spool_depth=self._spool_depth + self._appended + len(self._buffer),
                points_written=self._written,
                points_rejected=self._rejected,
                points_dropped=self._dropped,
                write_errors=self._errors,
                connected=self._connected,
                last_error=self._last_error,
                spool_ok=self._spool_ok,
                max_lines=self._max_lines,
            )

    def wait_drained(self, timeout: float) -> bool:
        """Block until buffer and spool are empty (tests, backfill); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush_soon()
            stats = self.stats()
            if stats.spool_depth == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Spool what is buffered, try a last drain for a few seconds, stop the thread."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sink.close()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            spool = self._open_spool()
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._ready.set()
            return
        with self._lock:
            self._spool_depth = spool.depth
        if spool.depth:
            log.info("time-series spool holds %d lines from before; sending them", spool.depth)
        self._ready.set()
        try:
            self._loop(spool)
        finally:
            spool.close()

    def _loop(self, spool: LineSpool) -> None:
        last_flush = -float("inf")  # a spool left from before is sent at once
        while True:
            with self._lock:
                while not (self._stopping or self._flush_requested):
                    now = time.monotonic()
                    pending = len(self._buffer) + self._appended
                    if pending >= self._batch_size:
                        break
                    if pending and self._first_pending is not None:
                        # a burst: a full batch, or its end (no line for flush_interval), or
                        # MAX_WAIT_S since its first line, whichever comes first
                        due = min(
                            self._last_told + self._flush_interval,
                            self._first_pending + max(MAX_WAIT_S, self._flush_interval),
                        )
                    else:  # a look at the spool now and then: lines from before, retries
                        due = last_flush + max(MAX_WAIT_S, self._flush_interval)
                    if now >= due:
                        break
                    self._lock.wait(timeout=due - now)
                stopping = self._stopping
                self._flush_requested = False
            last_flush = time.monotonic()
            try:
                self._spool_buffer(spool)
                if stopping:
                    self._final_drain(spool)
                    return
                if time.monotonic() >= self._retry_at:
                    self._drain(spool, deadline=None)
            except Exception as exc:
                # A bug or a store that stays locked must not end the thread: what is spooled
                # stays spooled; try again after a backoff.
                log.exception("time-series writer: unexpected error; retrying")
                self._failed(RetryableWriteError(f"{type(exc).__name__}: {exc}"))
                if stopping:
                    return

    def _spool_buffer(self, spool: LineSpool) -> None:
        with self._lock:
            lines, self._buffer = self._buffer, []
            appended, self._appended = self._appended, 0
            self._first_pending = None
        if appended:
            spool.grew(appended)
            dropped = spool.trim()
            with self._lock:
                self._dropped += dropped
                self._spool_depth = spool.depth
        if not lines:
            return
        try:
            dropped = spool.append(lines)
        except Exception:
            # The store file is unwritable (disk full?): keep the lines in memory and retry.
            log.exception("cannot spool %d time-series lines; will retry", len(lines))
            with self._lock:
                self._buffer[:0] = lines
                self._spool_ok = False
            return
        with self._lock:
            self._dropped += dropped
            self._spool_depth = spool.depth
            self._spool_ok = True

    def _drain(self, spool: LineSpool, deadline: float | None) -> None:
        """Send batches until the spool is empty, a write fails, or the deadline passes."""
        while (deadline is None or time.monotonic() < deadline) and spool.depth:
            last_id, batch = spool.head(self._batch_size)
            if not batch:
                with self._lock:
                    self._spool_depth = spool.depth  # head() met the table's count again
                return
            try:
                self._send(batch)
            except RetryableWriteError as exc:
                self._failed(exc)
                return
            spool.remove_through(last_id)
            with self._lock:
                self._spool_depth = spool.depth
                self._connected = True
            self.backoff.reset()
            # New lines keep arriving during a long drain: spool them between batches so the
            # buffer stays small, and send full batches rather than the buffer's dribble.
            if (
                len(self._buffer) + self._appended >= self._batch_size
                or len(batch) < self._batch_size
            ):
                self._spool_buffer(spool)

    def _send(self, lines: list[str]) -> None:
        written, rejected = write_splitting(self.sink, lines)
        with self._lock:
            self._written += written
            self._rejected += rejected

    def _failed(self, exc: RetryableWriteError) -> None:
        backoff = self.backoff.next()
        self._retry_at = time.monotonic() + backoff
        with self._lock:
            self._errors += 1
            was_connected, self._connected = self._connected, False
            self._last_error = str(exc)
        if was_connected:
            log.warning("InfluxDB write failed (%s); spooling, retrying with backoff", exc)
        else:
            log.debug("InfluxDB still unavailable (%s); next try in %.1fs", exc, backoff)

    def _final_drain(self, spool: LineSpool) -> None:
        if spool.depth and self._connected:
            self._drain(spool, deadline=time.monotonic() + self._close_drain)
        if spool.depth:
            log.info("time-series spool keeps %d lines for the next start", spool.depth)
