"""Serial sources on real pseudo-terminals: chunks stamped, ports that vanish come back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerbside.edge.kbs1 import encode_frame
from kerbside.edge.model import Frame
from kerbside.edge.sources import Backoff, Received, SerialChunk
from kerbside.edge.sources.serial import Kbs1Decoder, SerialSource


class Pty:
    """A pseudo-terminal reached through a symlink, like a udev name or the simulator's."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1

    def open(self) -> Pty:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(self.link)
        return self

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for pty in made:
        pty.close()


def frame_bytes(sensor: str, seq: int) -> bytes:
    return encode_frame(Frame(sensor, seq, 0, 10, 20, 30, 3600, 12.5))


async def wait_for(predicate: object, limit_s: float = 5.0) -> None:
    """Poll ``predicate`` (the sources under test expose state, not events)."""
    assert callable(predicate)
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def fast_backoff() -> Backoff:
    return Backoff(first_s=0.05, cap_s=0.2)


def test_chunks_arrive_in_order_stamped_by_the_clock(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = Pty(tmp_path / "ttyA").open()
    ptys.append(pty)
    ticks = iter(range(1000, 100_000, 10))
    source = SerialSource(str(pty.link), 115200, clock=lambda: next(ticks))
    got: list[Received] = []

    async def main() -> None:
        task = asyncio.create_task(source.run(got.append))
        await wait_for(lambda: source.connected)
        for seq in range(20):
            pty.write(frame_bytes("S-1", seq))
            await asyncio.sleep(0.002)
        await wait_for(lambda: sum(len(c.data) for c in got if isinstance(c, SerialChunk)) >= 20)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    chunks = [c for c in got if isinstance(c, SerialChunk)]
    assert b"".join(c.data for c in chunks) == b"".join(frame_bytes("S-1", s) for s in range(20))
    assert all(c.src == f"serial:{pty.link}" for c in chunks)
    stamps = [c.t for c in chunks]
    assert stamps == sorted(stamps)
    assert stamps[0] >= 1000
    assert not source.connected


def test_a_port_that_vanishes_is_reopened_and_the_other_port_carries_on(
    tmp_path: Path, ptys: list[Pty]
) -> None:
    first = Pty(tmp_path / "tty0").open()
    second = Pty(tmp_path / "tty1").open()
    ptys += [first, second]
    sources = [
        SerialSource(str(p.link), 115200, clock=lambda: 0, backoff=fast_backoff())
        for p in (first, second)
    ]
    got: list[Received] = []

    def data_from(source: SerialSource) -> bytes:
        return b"".join(c.data for c in got if isinstance(c, SerialChunk) and c.src == source.src)

    async def main() -> None:
        tasks = [asyncio.create_task(s.run(got.append)) for s in sources]
        await wait_for(lambda: all(s.connected for s in sources))
        first.write(b"before\n")
        await wait_for(lambda: data_from(sources[0]) == b"before\n")

        first.close()  # unplugged: the reader sees end-of-file or EIO
        await wait_for(lambda: not sources[0].connected)
        second.write(b"meanwhile\n")  # the other port does not notice
        await wait_for(lambda: data_from(sources[1]) == b"meanwhile\n")
        await asyncio.sleep(0.3)  # a few failed reopens while the device is away
        assert not sources[0].connected

        first.open()  # plugged back in under the same name
        await wait_for(lambda: sources[0].connected)
        first.write(b"after\n")
        await wait_for(lambda: data_from(sources[0]) == b"before\nafter\n")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert sources[0].opens == 2
    assert sources[1].opens == 1


def test_a_port_missing_at_start_is_opened_when_it_appears(tmp_path: Path, ptys: list[Pty]) -> None:
    link = tmp_path / "ttyLATE"
    source = SerialSource(str(link), 115200, clock=lambda: 0, backoff=fast_backoff())
    got: list[Received] = []

    async def main() -> None:
        task = asyncio.create_task(source.run(got.append))
        await asyncio.sleep(0.3)
        assert not source.connected
        pty = Pty(link).open()
        ptys.append(pty)
        await wait_for(lambda: source.connected)
        pty.write(b"hello")
        await wait_for(lambda: bool(got))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert isinstance(got[0], SerialChunk)
    assert got[0].data == b"hello"


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(first_s=0.5, cap_s=4.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in ceilings]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    spread = {round(Backoff(first_s=1, cap_s=1).next_delay(), 6) for _ in range(20)}
    assert len(spread) > 1, "jittered"


def test_the_serial_decoder_counts_bytes_and_bad_frames_per_port() -> None:
    decoder = Kbs1Decoder()
    good = frame_bytes("S-1", 1)
    bad = good.replace(b"*", b"*0")[:-4] + b"\r\n"  # checksum mangled
    data = b"noise" + good + bad + good[:10]
    items = decoder.decode(SerialChunk("serial:x", 0, data))
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.seq for f in frames] == [1]
    assert decoder.bytes_seen == len(data)
    assert decoder.bad_frames == 1
    rest = decoder.decode(SerialChunk("serial:x", 1, good[10:]))
    assert [i.seq for i in rest if isinstance(i, Frame)] == [1]
