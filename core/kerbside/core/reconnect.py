"""paho-mqtt's network loop with our reconnects: every wait before another attempt comes from
the one ``Backoff`` (kerbside.core.backoff), none from paho's own policy (``reconnect_delay_set``,
``loop_forever``'s retries).

``serve_connection`` runs on a thread of the caller's after ``connect_async``: it connects, serves
the connection with ``loop()`` until it ends, waits ``backoff.next()`` and connects again, until
``stop`` is set. To leave, the caller sets ``stop`` and then calls ``disconnect()``: the
connection being served ends with the DISCONNECT, and a wait between attempts ends at once.

Only the thread serving the connection writes to the socket. paho's ``publish()`` (and ``ack()``,
``subscribe()``...) writes at once from the caller's thread unless paho runs a thread of its own
(``loop_start``) or an event loop is said to write; beside ``loop()`` on another thread, two
threads would take packets off one queue and send them in either order (or interleave one
written in part). ``serve_connection`` registers a socket-write hook, as such an event loop would:
paho then queues each packet and wakes ``loop()``, which writes it.

The backoff is reset when the broker accepts a connection (CONNACK), not when the socket opens:
a broker that takes the TCP connection and refuses the client is retried with growing delays,
as one that is down. paho itself is not imported here: the client is anything with paho's three
methods and its socket-write hook, so core stays free of the programs' dependencies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from kerbside.core.backoff import Backoff

SUCCESS = 0  # paho's MQTT_ERR_SUCCESS: loop() served the connection and it is still there
LOOP_S = 1.0  # the longest loop() waits on the socket (paho's own default)


class NetworkClient(Protocol):
    """What of a ``paho.mqtt.client.Client`` the loop uses."""

    on_socket_register_write: Callable[[Any, Any, Any], None] | None

    def reconnect(self) -> object: ...

    def loop(self, timeout: float = 1.0) -> int: ...

    def is_connected(self) -> bool: ...


def serve_connection(
    client: NetworkClient,
    backoff: Backoff,
    stop: threading.Event,
    *,
    unreachable: Callable[[OSError], None],
) -> None:
    """Connect, serve, and connect again after ``backoff.next()`` until ``stop`` is set.

    ``unreachable`` is told each attempt that could not open a connection (refused, no route,
    a TLS handshake that failed); paho's callbacks tell the rest (CONNACK, disconnection).
    """
    client.on_socket_register_write = _loop_writes
    while not stop.is_set():
        try:
            client.reconnect()
        except OSError as exc:
            unreachable(exc)
        else:
            accepted = False
            while client.loop(LOOP_S) == SUCCESS:
                if not accepted and client.is_connected():
                    accepted = True
                    backoff.reset()
        if stop.wait(backoff.next()):
            return


def _loop_writes(client: Any, userdata: Any, sock: Any) -> None:
    """paho's hook for an event loop that writes: ``loop()`` does, woken by paho itself."""
