"""What the collector publishes, through a durable outbox.

Alert changes and retained bay states are written to the store's outbox in the same transaction
as the changes that caused them, handed to paho after the commit, and removed once the broker
has acknowledged them (QoS 1). After a crash, what was committed but not acknowledged is sent
again on the next connection, so no alert change is lost (a consumer may see one twice and
can de-duplicate on ``(alert_id, status)``). Dead letters are QoS 0 and not kept.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from kerbside.collector.store import OutboxMessage, Store, dumps

# Publications handed to the MQTT link and not yet acknowledged by the broker, at most.
WINDOW = 200
MAINTENANCE_KINDS = frozenset({"gateway_offline", "sensor_silent", "sensor_fault", "low_battery"})


class Link(Protocol):
    connected: bool

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int: ...


def deadletter_payload(topic: str, reason: str, payload: bytes) -> str:
    """A dead letter's payload: the text, or base64 of its first KiB if not UTF-8."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(payload[:1024]).decode("ascii")
    return json.dumps({"v": 1, "topic": topic, "reason": reason, "payload": text})


class Publisher:
    def __init__(self, store: Store, topic_root: str) -> None:
        self.store = store
        self.root = topic_root.rstrip("/")
        self._bays: dict[str, str] = {}  # bay_id -> payload, coalesced within one commit
        self._deferred: dict[str, dict[str, Any]] = {}
        self.deferring = False
        self._alerts: list[tuple[str, str]] = []
        self._staged: list[OutboxMessage] = []
        self._unacked: dict[int, OutboxMessage] = {}  # link's number -> message
        # committed, not yet handed to the link: alert changes go before bay states, and at most
        # WINDOW are with the link at once, so an alert never queues behind the thousands of
        # bay states released at the end of a backlog
        self._waiting_alerts: dict[int, OutboxMessage] = {}
        self._waiting_bays: dict[int, OutboxMessage] = {}
        self._done: list[int] = []
        self._deadletters: list[str] = []
        self.link: Link | None = None
        for message in store.outbox():
            self._wait(message)

    # -- inside a transaction --------------------------------------------------------------

    def bay(self, bay_id: str, payload: dict[str, Any]) -> None:
        """A bay's new retained state. While ``deferring`` (the broker's backlog is being
        drained) only each bay's latest state is kept, and published when the backlog is in."""
        if self.deferring:
            self._deferred[bay_id] = payload
        else:
            self._bays[bay_id] = dumps(payload)

    def release(self) -> None:
        """The backlog is in: stage the bays' latest states (inside a transaction)."""
        self.deferring = False
        for bay_id, payload in self._deferred.items():
            self._bays[bay_id] = dumps(payload)
        self._deferred = {}

    def alert(self, record: dict[str, Any], text: str | None = None) -> None:
        if record["kind"] in MAINTENANCE_KINDS:
            topic = f"{self.root}/alerts/maintenance"
        else:
            topic = f"{self.root}/alerts/{record['zone_id']}"
        self._alerts.append((topic, text or dumps(record)))

    def deadletter(self, topic: str, reason: str, payload: bytes) -> None:
        self._deadletters.append(deadletter_payload(topic, reason, payload))

    def stage(self) -> None:
        """Write what this transaction publishes to the outbox; drop what the broker has."""
        if self._done:
            self.store.remove_outbox(self._done)
            self._done = []
        for topic, payload in self._alerts:
            row = self.store.add_outbox(topic, payload, 1, False)
            self._staged.append(OutboxMessage(row, topic, payload, 1, False))
        for bay_id, payload in self._bays.items():
            topic = f"{self.root}/bays/{bay_id}"
            row = self.store.add_outbox(topic, payload, 1, True)
            self._staged.append(OutboxMessage(row, topic, payload, 1, True))
        self._alerts = []
        self._bays = {}

    def discard(self) -> None:
        """The transaction rolled back."""
        self._alerts, self._bays, self._staged = [], {}, []

    # -- after the commit --------------------------------------------------------------------

    def _wait(self, message: OutboxMessage) -> None:
        queue = self._waiting_bays if message.retain else self._waiting_alerts
        queue[message.id] = message

    def send(self) -> None:
        for message in self._staged:
            self._wait(message)
        self._staged = []
        link = self.link
        if link is None:
            return
        for text in self._deadletters:
            link.publish(f"{self.root}/deadletter", text, 0)
        self._deadletters = []
        if not link.connected:
            return
        for queue in (self._waiting_alerts, self._waiting_bays):
            while queue and len(self._unacked) < WINDOW:
                message = queue.pop(next(iter(queue)))
                mid = link.publish(message.topic, message.payload, message.qos, message.retain)
                self._unacked[mid] = message

    def published(self, mid: int) -> None:
        """The broker acknowledged a message: forget it, and hand the link the next."""
        message = self._unacked.pop(mid, None)
        if message is not None:
            self._done.append(message.id)
            if self._waiting_alerts or self._waiting_bays:
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
