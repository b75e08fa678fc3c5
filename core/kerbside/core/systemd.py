"""sd_notify(3) over its socket: READY, STOPPING, STATUS and watchdog keep-alives to systemd.

The protocol is one datagram of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named in
``NOTIFY_SOCKET`` (a leading ``@`` is the abstract namespace). Without that variable (not run by
systemd, or ``Type=simple``) every call does nothing. ``WATCHDOG_USEC`` is the unit's
``WatchdogSec=``; a program must send ``WATCHDOG=1`` well within it (we send at half), and must
send it from the loop that does the work, so that a stalled loop lets the watchdog fire.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Talks to systemd if it is listening; silent otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process the watchdog is meant for.
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def keepalive_s(self) -> float | None:
        """How often to send ``WATCHDOG=1`` (half the watchdog's period), or None."""
        return None if self.watchdog_s is None else self.watchdog_s / 2

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``READY=1``, ``STATUS=...``); False if nobody listens or it failed."""
        if self._address is None:
            return False
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(lines).encode())
        except OSError as exc:
            if not self._warned:  # once: a systemd that went away must not flood the log
                log.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")
