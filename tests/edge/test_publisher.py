"""The gateway's MQTT link reconnects with the Backoff it is given (core's one policy), from
the first connection on, and starts over when the broker accepts it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kerbside.edge.config import EdgeConfig
from kerbside.edge.publisher import MqttLink
from tests.helpers import Mosquitto, RecordingBackoff, free_port, wait_until_async

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def test_the_link_waits_its_backoff_between_attempts(tmp_path: Path) -> None:
    port = free_port()
    config = EdgeConfig.model_validate(
        {
            "gateway_id": "gw-backoff",
            "mqtt": {"host": "127.0.0.1", "port": port},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"require_sync": False},
        }
    )
    backoff = RecordingBackoff(0.1, 0.4)
    attempts: list[float] = []
    connected: list[float] = []

    async def main() -> None:
        link = MqttLink(
            config,
            asyncio.get_running_loop(),
            will=b"{}",
            on_connected=lambda: connected.append(time.monotonic()),
            on_disconnected=lambda: None,
            on_published=lambda mids: None,
            on_connect_failed=lambda reason: attempts.append(time.monotonic()),
            backoff=backoff,
        )
        link.start()
        broker: Mosquitto | None = None
        try:
            await wait_until_async(lambda: len(attempts) >= 4, what="four refused attempts")
            assert [delay for _, delay in backoff.given[:3]] == [0.1, 0.2, 0.4]
            assert backoff.spaced(attempts)
            broker = Mosquitto(tmp_path / "broker", port=port).start()
            await wait_until_async(lambda: connected, what="connected once the broker is up")
            assert backoff.failures == 0
        finally:
            link.stop()
            if broker is not None:
                broker.stop()
        assert link.alive, "stopped on request, not dead"

    asyncio.run(main())
