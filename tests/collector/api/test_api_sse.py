"""The alert stream: live changes, Last-Event-ID resume with exactly the missed changes, and a
reset for ids the server never issued (the session cookie a browser's EventSource uses:
test_api_signin.py)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

import httpx

from tests.collector.api.conftest import ApiServer, token_of
from tests.collector.api.harness import T0

# zones CA-F, CA-G, CA-F, ...
BAYS = ["CA-F-B00000", "CA-G-B00001", "CA-F-B00002", "CA-G-B00003", "CA-F-B00004", "CA-G-B00005"]


class HasUrl(Protocol):
    """A collector's API being served: the in-process harness's or a live collector's."""

    @property
    def url(self) -> str: ...


class Stream:
    """An SSE client in a thread: parsed events arrive on ``events``."""

    def __init__(self, api: HasUrl, headers: dict[str, str], params: dict[str, Any]) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.status: queue.Queue[int] = queue.Queue()
        self._client = httpx.Client(base_url=api.url, headers=headers, timeout=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(params,), daemon=True)
        self._thread.start()
        self.code = self.status.get(timeout=10)

    def _run(self, params: dict[str, Any]) -> None:
        try:
            with self._client.stream("GET", "/api/v1/alerts/stream", params=params) as resp:
                self.status.put(resp.status_code)
                event: dict[str, Any] = {}
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if "data" in event:
                            self.events.put(event)
                        event = {}
                    elif line.startswith(":"):
                        continue
                    else:
                        key, _, value = line.partition(":")
                        event[key] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            return

    def next(self, timeout: float = 5) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


@contextmanager
def stream(
    api: ApiServer, headers: dict[str, str] | None = None, **params: Any
) -> Iterator[Stream]:
    s = Stream(api, headers or {"Authorization": f"Bearer {token_of('officer')}"}, params)
    try:
        yield s
    finally:
        s.close()


def _raise(api: ApiServer, n: int) -> list[str]:
    """``n`` alerts raised, each at a bay of its own (a bay raises one per session)."""
    raised = api.call(lambda: len(api.service.store.alerts(limit=100)))
    return [
        api.call(partial(api.service.raise_alert, BAYS[i % len(BAYS)], "unpaid", at=T0 + i))[
            "alert_id"
        ]
        for i in range(raised, raised + n)
    ]


def test_live_changes_arrive_in_order(api: ApiServer) -> None:
    with stream(api) as s:
        assert s.code == 200
        ids = _raise(api, 3)
        got = [s.next() for _ in ids]
    assert [json.loads(e["data"])["alert_id"] for e in got] == ids
    assert all(e["event"] == "alert" for e in got)
    assert [int(e["id"]) for e in got] == [1, 2, 3]


def test_reconnect_with_last_event_id_gets_exactly_the_missed_changes(api: ApiServer) -> None:
    _raise(api, 2)
    with stream(api, since=0) as s:
        first = [s.next(), s.next()]
    last_id = first[-1]["id"]
    missed = _raise(api, 3)  # while the phone is out of signal
    resumed_headers = {
        "Authorization": f"Bearer {token_of('officer')}",
        "Last-Event-ID": last_id,
    }
    with stream(api, resumed_headers, since=0) as s:  # the header wins over ?since
        got = [s.next() for _ in missed]
        assert [json.loads(e["data"])["alert_id"] for e in got] == missed
        # ...and nothing else: the next event is the next new change, not a repeat.
        later = _raise(api, 1)
        assert json.loads(s.next()["data"])["alert_id"] == later[0]
        assert s.events.empty()


def test_status_changes_are_streamed_and_filters_apply(api: ApiServer) -> None:
    with stream(api, zone="CA-G") as s:
        ids = _raise(api, 3)  # bays in CA-F, CA-G, CA-F
        with api.client("officer") as c:
            r = c.post(f"/api/v1/alerts/{ids[1]}/ack", json={"officer": "CEO-7"})
            assert r.status_code == 200
        first, second = s.next(), s.next()
    assert json.loads(first["data"])["alert_id"] == ids[1]
    assert json.loads(second["data"])["status"] == "acknowledged"
    assert s.events.empty()


def test_id_from_a_wiped_store_gets_a_reset(api: ApiServer) -> None:
    _raise(api, 1)
    headers = {"Authorization": f"Bearer {token_of('officer')}", "Last-Event-ID": "999"}
    with stream(api, headers) as s:
        reset = s.next()
        assert reset["event"] == "reset"
        assert reset["id"] == "1"
        ids = _raise(api, 1)
        assert json.loads(s.next()["data"])["alert_id"] == ids[0]


def test_list_tells_where_to_start_the_stream(api: ApiServer) -> None:
    _raise(api, 2)
    with api.client("officer") as c:
        r = c.get("/api/v1/alerts", params={"status": "open"})
    assert r.headers["x-last-event-id"] == "2"
    assert len(r.json()["items"]) == 2
    with stream(api, since=r.headers["x-last-event-id"]) as s:
        ids = _raise(api, 1)
        assert json.loads(s.next()["data"])["alert_id"] == ids[0]
