"""What the collector publishes, through the store's durable outbox.

Alert changes and retained bay states are written to the outbox in the same transaction as the
changes that caused them (they are effects of the core), handed to the link after the commit,
and removed, with the next commit, once the broker has acknowledged them (QoS 1). After a crash,
what was committed but not acknowledged is sent again on the next connection, so no alert change
is lost (a consumer may see one twice and can de-duplicate on ``(alert_id, status)``). Dead
letters are QoS 0 and not kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from kerbside.collector.effects import DeadLetter
from kerbside.collector.link import Transport
from kerbside.collector.store import OutboxMessage
from kerbside.collector.telemetry import Latencies

# Publications handed to the link and not yet acknowledged by the broker, at most.
WINDOW = 200


class Outbox:
    def __init__(
        self,
        waiting: Iterable[OutboxMessage],
        link: Transport,
        *,
        latency: Latencies | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        # alert changes committed by this process -> when (``clock``): the broker's
        # acknowledgement of each is observed in ``latency``; those committed before a restart
        # are not timed (their commit instant is gone)
        self._latency = latency
        self._clock = clock
        self._committed_at: dict[int, float] = {}
        self._unacked: dict[int, OutboxMessage] = {}  # link's token -> message
        # committed, not yet handed to the link: alert changes go before bay states, and at most
        # WINDOW are with the link at once, so an alert never queues behind the thousands of
        # bay states released at the end of a backlog (ordered dicts: taking the first of a
        # plain dict walks past every one taken before it, 12 us each with 40,000 waiting)
        self._waiting_alerts: OrderedDict[int, OutboxMessage] = OrderedDict()
        self._waiting_bays: OrderedDict[int, OutboxMessage] = OrderedDict()
        self._delivered: list[int] = []
        for message in waiting:
            self._wait(message)

    def _wait(self, message: OutboxMessage) -> None:
        queue = self._waiting_bays if message.retain else self._waiting_alerts
        queue[message.id] = message

    def committed(
        self, messages: Sequence[OutboxMessage], deadletters: Sequence[DeadLetter]
    ) -> None:
        """A unit of work committed these publications: send what the window allows."""
        timed = self._latency is not None
        now = self._clock() if timed else 0.0
        for message in messages:
            self._wait(message)
            if timed and not message.retain:
                self._committed_at[message.id] = now
        link = self._link
        for topic, text in deadletters:
            link.publish(topic, text, 0)
        self.send()

    def send(self) -> None:
        link = self._link
        if not link.connected:
            return
        for queue in (self._waiting_alerts, self._waiting_bays):
            while queue and len(self._unacked) < WINDOW:
                message = queue.popitem(last=False)[1]
                token = link.publish(message.topic, message.payload, message.qos, message.retain)
                self._unacked[token] = message

    def published(self, token: int) -> None:
        """The broker acknowledged a message: forget it, and hand the link the next."""
        message = self._unacked.pop(token, None)
        if message is not None:
            self._delivered.append(message.id)
            committed_at = self._committed_at.pop(message.id, None)
            if committed_at is not None and self._latency is not None:
                self._latency.observe(self._clock() - committed_at)
            if self._waiting_alerts or self._waiting_bays:
                self.send()

    def take_delivered(self) -> list[int]:
        """Outbox rows the broker has: the next unit of work deletes them."""
        ids, self._delivered = self._delivered, []
        return ids

    def give_back_delivered(self, ids: Sequence[int]) -> None:
        """That unit of work failed: they go with the next one."""
        self._delivered[:0] = ids

    def adopt(self, stored: Iterable[OutboxMessage]) -> None:
        """The store's outbox read again after a commit whose outcome was not known (the
        database's reply lost): publications it committed that this outbox never heard of are
        sent like any other."""
        known = {m.id for m in self._unacked.values()}
        known.update(self._waiting_alerts, self._waiting_bays, self._delivered)
        found = False
        for message in stored:
            if message.id not in known:
                self._wait(message)
                found = True
        if found:
            self.send()

    def reconnected(self) -> None:
        """Send again what the broker had not acknowledged before the connection dropped
        (in the order first sent)."""
        queues = (self._unacked, self._waiting_alerts, self._waiting_bays)
        everything = sorted((m for queue in queues for m in queue.values()), key=lambda m: m.id)
        for queue in queues:
            queue.clear()
        for message in everything:
            self._wait(message)
        self.send()

    @property
    def pending(self) -> int:
        return len(self._waiting_alerts) + len(self._waiting_bays) + len(self._unacked)
