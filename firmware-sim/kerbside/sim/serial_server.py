"""``kerbside-sim serial``: the street served live on pseudo-terminals (and, optionally, its BLE
adverts on a unix socket), so a real agent reads a real tty.

Each port is a pty whose slave side is reached through a symlink we own (``DIR/tty<p>``): the
agent opens the symlink, and when a port "vanishes and returns" (SIGUSR1: port 0 is closed, its
symlink removed, and two seconds later a new pty takes the same symlink name) the agent's reopen
of the same path finds the new one. The master is non-blocking: when nobody reads, stale input
is flushed and new bytes are dropped rather than stall the simulation.

``--wait-for-reader`` starts the street only once a reader has opened every port (and, with
``--ble-socket``, connected to it): its sensors power up, and the visits' times count, from the
moment the gateway listens, as when a street is commissioned. A reader is seen arriving by the
pty itself: while nobody holds the slave side open, its master reports a hang-up (Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import select
import signal
import socket
import sys
import tempfile
import termios
import time
import tty
from pathlib import Path
from types import FrameType

from kerbside.core.instants import Instant, format_instant
from kerbside.core.output import print_lines
from kerbside.core.site import load_site
from kerbside.sim.capture import dump_yaml, edge_config
from kerbside.sim.parking import (
    QUICK,
    Mix,
    gateway_bays,
    plan_parking,
    site_gateways,
    visits_by_bay,
)
from kerbside.sim.street import DEFAULT_GATEWAY, BaySpec, SimConfig, SimStreet, default_layout
from kerbside.sim.wire import BleEmission

TICK_S = 0.05
BACKEND_PATH = "kerbside.sim.ble_backend.SimScannerBackend"
VANISH_S = 2.0
_PENDING_MAX = 256 * 1024  # bytes queued per port for a slow reader
_ABSENT_S = 2.0  # a reader that took nothing for this long is not there
_TRUTH_EVERY_S = 30.0


class PtyPort:
    """One simulated serial port: a pty pair and the symlink that names its slave."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None
        self.dropped = 0
        self.written = 0
        self._pending = bytearray()
        self._tty = ""
        self._unread = 0
        self._drained_at = 0.0

    def open(self, *, await_reader: bool = False) -> None:
        """Make the pty and its symlink. ``await_reader``: let go of our own hold on its slave
        side, so that ``has_reader`` can tell when somebody opens it."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: \r and \n pass through untouched
        flags = fcntl.fcntl(master, fcntl.F_GETFL)
        fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.master, self.slave = master, slave
        self._tty = os.ttyname(slave)
        self._unread = 0
        self._drained_at = time.monotonic()
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self._tty)
        tmp.replace(self.link)  # atomic: a reader never sees a half-made link
        if await_reader:
            os.close(slave)
            self.slave = None

    def has_reader(self) -> bool:
        """Whether somebody has the port open (after ``open(await_reader=True)``): the master
        stops reporting a hang-up once anyone holds the slave side. Then we hold it too again
        (to see what the reader leaves unread, and flush it if they go)."""
        if self.master is None:
            return False
        if self.slave is not None:
            return True
        poller = select.poll()
        poller.register(self.master, select.POLLIN)  # a hang-up is reported whatever is asked
        if any(event & select.POLLHUP for _, event in poller.poll(0)):
            return False
        self.slave = os.open(self._tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._drained_at = time.monotonic()
        return True

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = None
        self._pending.clear()

    @property
    def is_open(self) -> bool:
        return self.master is not None

    def write(self, data: bytes, now: float) -> None:
        """Queue ``data`` and push what the pty takes; ``now`` is the wall clock (monotonic)."""
        if self.master is None or self.slave is None:
            self.dropped += len(data)
            return
        self._pending += data
        if len(self._pending) > _PENDING_MAX:  # bounded: the oldest bytes go first
            cut = len(self._pending) - _PENDING_MAX
            del self._pending[:cut]
            self.dropped += cut
        self.pump(now)

    def pump(self, now: float) -> None:
        """Move queued bytes into the pty. A reader that takes nothing for a while is taken to
        be absent: what waits for it is stale and is thrown away, so whoever opens the port
        next reads fresh lines (a slow reader keeps everything, up to the bound)."""
        if self.master is None or self.slave is None:
            return
        try:
            unread = int.from_bytes(
                fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder
            )
            if unread < self._unread or unread == 0:
                self._drained_at = now
            self._unread = unread
            if unread and now - self._drained_at > _ABSENT_S:
                termios.tcflush(self.slave, termios.TCIFLUSH)
                self.dropped += unread + len(self._pending)
                self._pending.clear()
                self._unread = 0
                self._drained_at = now
            if self._pending:
                n = os.write(self.master, self._pending)
                self.written += n
                del self._pending[:n]
        except BlockingIOError:
            pass  # the pty is full: keep the bytes for the next tick
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
        with contextlib.suppress(OSError):  # whatever the reader wrote back: nobody listens
            os.read(self.master, 4096)


class BleFeedServer:
    """Adverts as JSON lines (capture record shape) to every client of a unix socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._server.setblocking(False)
        self._clients: list[socket.socket] = []

    def accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except BlockingIOError:
                return
            client.setblocking(False)
            self._clients.append(client)

    @property
    def has_client(self) -> bool:
        return bool(self._clients)

    def send(self, records: list[dict[str, object]]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        for client in list(self._clients):
            try:
                client.sendall(data)
            except (BlockingIOError, OSError):
                # A client that cannot keep up or went away is dropped; it may reconnect.
                self._clients.remove(client)
                client.close()

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ble_record(advert: BleEmission, t: Instant | None = None) -> dict[str, object]:
    return {
        "t": format_instant(advert.t if t is None else t),
        "src": "ble",
        "address": advert.address,
        "rssi": advert.rssi,
        "mfr": {str(advert.company_id): advert.payload.hex()},
    }


def _mix(args: argparse.Namespace) -> Mix:
    mix = QUICK if args.quick else Mix()
    if getattr(args, "first_arrival_s", None) is not None:
        low, high = sorted(args.first_arrival_s)
        mix = dataclasses.replace(mix, first_arrival_ms=(round(low * 1000), round(high * 1000)))
    return mix


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def serve_main(args: argparse.Namespace) -> int:
    # Live, simulated time starts at the wall clock so truth lines up with what an agent stamps
    # (at --speed X, simulated t maps to wall start + (t - start) / X).
    wait: bool = args.wait_for_reader
    start: Instant = args.start if args.start is not None else time.time_ns() // 1_000_000
    layout, _, _ = _street_layout(args, start, write_plan=False)
    if not layout:
        raise ValueError("nothing to serve: give --sensors or --ble-sensors above 0, or --site")
    n_serial = sum(1 for spec in layout if not spec.sensor_id.startswith("BLE-"))
    per_port = max(1, args.sensors_per_port)
    if args.ports:
        per_port = max(1, -(-n_serial // args.ports))
    n_ports = -(-n_serial // per_port)
    directory: Path = args.dir or Path(tempfile.mkdtemp(prefix="kerbside-sim-"))
    directory.mkdir(parents=True, exist_ok=True)
    links = [directory / f"tty{p}" for p in range(n_ports)]
    # Waiting for a reader, this street only names the ports and sensors for --config-out; the
    # one served starts when the reader has come.
    street = _build_street(args, start, links, per_port, write_plan=not wait)
    ports = [PtyPort(link) for link in links]
    ble = BleFeedServer(args.ble_socket) if args.ble_socket is not None else None
    stop = False
    vanish_requests = 0

    def on_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    def on_vanish(signum: int, frame: FrameType | None) -> None:
        nonlocal vanish_requests
        vanish_requests += 1

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_vanish)
    try:
        for port in ports:
            port.open(await_reader=wait)
        if args.config_out is not None:
            outbox = (args.config_out.parent / "outbox.db").resolve()
            # The agent's BLE source reaches our socket through the simulated bleak backend;
            # whoever starts it sets KERBSIDE_SIM_BLE_FEED=socket:<--ble-socket path>.
            backend = BACKEND_PATH if ble is not None else None
            config = edge_config(street, outbox, ble_backend=backend)
            _write_atomic(args.config_out, dump_yaml(config))
        # Where the street is served, for whoever started it; a reader gone away (`| head -1`)
        # is no error: the street is served all the same. BLE last: a BLE-only street has no
        # tty line to wait for.
        print_lines([*(str(port.link) for port in ports), *([str(ble.path)] if ble else [])])
        if wait:
            while not _readers_came(ports, ble):
                if stop:
                    return 0
                time.sleep(TICK_S)
            start = args.start if args.start is not None else time.time_ns() // 1_000_000
            street = _build_street(args, start, links, per_port, write_plan=True)
        end = None if args.hours is None else start + round(args.hours * 3_600_000)
        wall0 = time.monotonic()
        reopen_at: float | None = None
        last_truth = wall0
        while not stop:
            now_wall = time.monotonic()
            if vanish_requests and ports and reopen_at is None:
                vanish_requests = 0
                ports[0].close()
                reopen_at = now_wall + VANISH_S
            if reopen_at is not None and now_wall >= reopen_at:
                ports[0].open()
                reopen_at = None
            sim_now = start + int((now_wall - wall0) * args.speed * 1000)
            if end is not None:
                sim_now = min(sim_now, end)
            serial, adverts = street.advance(sim_now)
            for emission in serial:
                if emission.data:
                    ports[emission.port].write(emission.data, now_wall)
            for port in ports:
                port.pump(now_wall)
            if ble is not None:
                ble.accept()
                ble.send([ble_record(a) for a in adverts if a.fate not in ("lost", "silent")])
            if args.truth_out is not None and now_wall - last_truth >= _TRUTH_EVERY_S:
                _write_atomic(args.truth_out, street.truth(street.now).dumps())
                last_truth = now_wall
            if end is not None and sim_now >= end:
                break
            time.sleep(TICK_S)
        return 0
    finally:
        for port in ports:
            port.close()
        if ble is not None:
            ble.close()
        if args.truth_out is not None:
            _write_atomic(args.truth_out, street.truth(max(street.now, start + 1)).dumps())


def _readers_came(ports: list[PtyPort], ble: BleFeedServer | None) -> bool:
    """Whether every port has a reader, and the BLE socket (if any) a client."""
    if ble is not None:
        ble.accept()
    return all(port.has_reader() for port in ports) and (ble is None or ble.has_client)


def _build_street(
    args: argparse.Namespace,
    start: Instant,
    links: list[Path],
    per_port: int,
    *,
    write_plan: bool,
) -> SimStreet:
    """The street served from ``start`` (``write_plan``: the drivers' plan to --plan-out)."""
    layout, visits, gateway = _street_layout(args, start, write_plan=write_plan)
    return SimStreet(
        SimConfig(
            scenario=args.scenario,
            seed=args.seed,
            start=start,
            hours=args.hours,
            sensors_per_port=per_port,
            gateway_id=gateway,
            port_names=tuple(str(link) for link in links),
            layout=tuple(layout),
            visits=visits,
            incidents=visits is None,
            firmware=args.firmware,
            keepalive_s=args.keepalive_s,
            traffic=args.traffic,
        )
    )


def _street_layout(
    args: argparse.Namespace, start: Instant, *, write_plan: bool
) -> tuple[list[BaySpec], dict[str, list[tuple[Instant, Instant]]] | None, str]:
    """The generated street, or (with --site) one gateway's bays of a site with planned
    drivers; ``write_plan``: the plan (rights to post, true contraventions) goes to --plan-out."""
    if args.site is None:
        layout = default_layout(args.sensors, args.ble_sensors)
        visits = None if args.visits is None else read_visits(args.visits, start, layout)
        return layout, visits, args.gateway or DEFAULT_GATEWAY
    site = load_site(args.site)
    gateways = site_gateways(site)
    gateway = args.gateway or (gateways[0] if len(gateways) == 1 else None)
    if gateway is None:
        raise ValueError(f"--gateway is needed: the site has gateways {', '.join(gateways)}")
    bays = gateway_bays(site, gateway)
    hours = args.hours if args.hours is not None else 24.0
    plan = plan_parking(
        site,
        seed=args.seed,
        start=start,
        hours=hours,
        bay_ids=[b.id for b in bays],
        mix=_mix(args),
    )
    if write_plan and args.plan_out is not None:
        _write_atomic(args.plan_out, json.dumps(plan.to_json(), indent=1) + "\n")
    layout = [BaySpec(b.id, b.sensor or "", b.zone_id) for b in bays]
    return layout, visits_by_bay(plan), gateway


def read_visits(
    path: Path, start: Instant, layout: list[BaySpec]
) -> dict[str, list[tuple[Instant, Instant]]]:
    """``--visits``: bay id -> [[arrival_s, departure_s], ...] after the start, checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read visits: {exc}") from exc
    bays = {spec.bay_id for spec in layout}
    if not isinstance(data, dict):  # a bad file, said in one line like the others:
        raise ValueError(f"{path}: visits must be an object of bay id -> [[arrival, departure]]")  # noqa: TRY004
    visits: dict[str, list[tuple[Instant, Instant]]] = {}
    for bay_id, spans in data.items():
        if bay_id not in bays:
            raise ValueError(f"{path}: {bay_id}: no such bay on this street")
        try:
            times = sorted((float(a), float(d)) for a, d in spans)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {bay_id}: want [[arrival_s, departure_s], ...]") from exc
        last = 0.0
        for arrival, departure in times:
            if not last <= arrival < departure:
                raise ValueError(f"{path}: {bay_id}: visits must not overlap or go back in time")
            last = departure + 10  # room for the car to pull out
        visits[bay_id] = [(start + round(a * 1000), start + round(d * 1000)) for a, d in times]
    return visits
