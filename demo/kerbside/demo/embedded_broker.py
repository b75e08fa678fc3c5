"""The demo's embedded MQTT broker: ``python -m kerbside.demo.embedded_broker --port N``.

amqtt (the `sim` extra) on 127.0.0.1, anonymous, MQTT 3.1.1. Prints ``ready`` on stdout once it
listens; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence


def broker_config(port: int) -> dict[str, object]:
    """Anonymous clients on 127.0.0.1:port, no $SYS topics, no per-packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(port: int) -> None:
    # The `sim` extra; imported when used. amqtt ships no type information.
    from amqtt.broker import Broker  # type: ignore[import-untyped]  # noqa: PLC0415

    broker = Broker(broker_config(port))
    await broker.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kerbside.demo.embedded_broker",
        description="An MQTT 3.1.1 broker (amqtt) on 127.0.0.1, for `kerbside demo`.",
        epilog="example: python -m kerbside.demo.embedded_broker --port 18830",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="broker: %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.port))
    except OSError as exc:
        print(
            f"broker: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
