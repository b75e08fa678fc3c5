"""The collector's MQTT link: messages in, each with its ack handle; acks and publications out.

The runtime sees only ``Transport`` and ``LinkEvents``: paho in a child process
(``link.process``) today, any other client tomorrow. A message is acknowledged only once its
batch is committed; a publication's token comes back through ``LinkEvents.published`` when the
broker has it (QoS 1).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Message(NamedTuple):
    """One received PUBLISH, as the event loop sees it (a tuple: thousands a second)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int  # connection it arrived on: an ack is only valid on that connection
    received: int  # epoch ms at arrival


class LinkEvents(Protocol):
    """What a transport reports, on the event loop."""

    def messages(self, batch: list[Message]) -> None: ...

    def published(self, token: int) -> None: ...

    def connection(self, up: bool) -> None: ...


class Transport(Protocol):
    @property
    def connected(self) -> bool: ...

    def start(self, events: LinkEvents) -> None:
        """Connect (and keep reconnecting); what happens is reported to ``events``."""

    def stop(self) -> None: ...

    def ack(self, message: Message) -> None:
        """Acknowledge a committed message (only on the connection it came in on: after a
        reconnect the broker redelivers it, and the store's de-duplication absorbs the copy)."""

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> int:
        """Send a publication; the token returned comes back to ``LinkEvents.published``."""
