"""The demo's MQTT broker: Mosquitto when installed, else amqtt run as a child process.

amqtt is a maintained asyncio broker in pure Python (the `sim` extra); it speaks MQTT 3.1.1 only,
so the demo then tells the collector ``mqtt.protocol: "3.1.1"`` (the edge agents speak 3.1.1
anyway). The embedded broker is ``kerbside.demo.embedded_broker``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from kerbside.demo.processes import Children, DemoError, module_argv, wait_port


def find_mosquitto(
    path: str | None = None, extra_dirs: tuple[str, ...] = ("/usr/sbin",)
) -> str | None:
    """A ``mosquitto`` on ``path`` (default $PATH), else in ``extra_dirs`` (Debian puts it in
    /usr/sbin, which is not on a normal user's PATH)."""
    found = shutil.which("mosquitto", path=path)
    if found is not None:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# The production broker's limits (the Ansible broker role): Mosquitto's default queue of 1,000
# messages would drop the street's events while the demo's collector restarts; nothing over the
# collector's 64 KiB is let in.
MOSQUITTO_LIMITS = (
    "max_queued_messages 1600000",
    "max_queued_bytes 536870912",
    "message_size_limit 65536",
    "max_packet_size 1048576",
)


def mosquitto_conf(port: int, *, as_root: bool) -> str:
    """The demo's mosquitto.conf: anonymous on 127.0.0.1:port, in memory, production limits."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    lines += MOSQUITTO_LIMITS
    if as_root:
        lines.append("user root")  # else it drops to user `mosquitto` (may not exist)
    return "\n".join(lines) + "\n"


def start_broker(children: Children, choice: str, port: int) -> tuple[str, str]:
    """Start the broker; return (description, the collector's MQTT protocol)."""
    mosquitto = find_mosquitto() if choice in ("auto", "mosquitto") else None
    if choice == "mosquitto" and mosquitto is None:
        raise DemoError("mosquitto is not installed: install it or use --broker embedded")
    if mosquitto is not None:
        conf = children.workdir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(port, as_root=os.geteuid() == 0))
        child = children.start("broker", [mosquitto, "-c", str(conf)])
        wait_port(port, child, 10)
        return f"mosquitto on 127.0.0.1:{port}", "5"
    if importlib.util.find_spec("amqtt") is None:
        raise DemoError(
            "no mosquitto on the PATH and amqtt is not installed: pip install 'kerbside[sim]'"
        )
    child = children.start(
        "broker", [*module_argv("kerbside.demo.embedded_broker"), "--port", str(port)]
    )
    wait_port(port, child, 15)
    return f"embedded amqtt broker (MQTT 3.1.1) on 127.0.0.1:{port}", "3.1.1"
