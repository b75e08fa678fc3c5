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
from kerbside.edge.sources import Received, SerialChunk
from kerbside.edge.sources.serial import Kbs1Decoder, SerialSource
from tests.helpers import RecordingBackoff, wait_until_async


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


def fast_backoff() -> RecordingBackoff:
    return RecordingBackoff(first_s=0.05, cap_s=0.2)


def test_chunks_arrive_in_order_stamped_by_the_clock(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = Pty(tmp_path / "ttyA").open()
    ptys.append(pty)
    ticks = iter(range(1000, 100_000, 10))
    source = SerialSource(str(pty.link), 115200, clock=lambda: next(ticks))
    got: list[Received] = []

    async def main() -> None:
        task = asyncio.create_task(source.run(got.append))
        await wait_until_async(lambda: source.connected)
        for seq in range(20):
            pty.write(frame_bytes("S-1", seq))
            await asyncio.sleep(0.002)  # frames apart in time, as a sensor sends them
        await wait_until_async(
            lambda: sum(len(c.data) for c in got if isinstance(c, SerialChunk)) >= 20
        )
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
        await wait_until_async(lambda: all(s.connected for s in sources))
        first.write(b"before\n")
        await wait_until_async(lambda: data_from(sources[0]) == b"before\n")

        first.close()  # unplugged: the reader sees end-of-file or EIO
        await wait_until_async(lambda: not sources[0].connected)
        second.write(b"meanwhile\n")  # the other port does not notice
        await wait_until_async(lambda: data_from(sources[1]) == b"meanwhile\n")
        backoff = sources[0].backoff
        assert isinstance(backoff, RecordingBackoff)
        await wait_until_async(lambda: backoff.failures >= 4, what="failed reopens")
        assert not sources[0].connected
        # each reopen came after the backoff's delay, doubling to its cap
        assert [d for _, d in backoff.given[:4]] == [0.05, 0.1, 0.2, 0.2]
        assert backoff.spaced([at for at, _ in backoff.given])

        first.open()  # plugged back in under the same name
        await wait_until_async(lambda: sources[0].connected)
        first.write(b"after\n")
        await wait_until_async(lambda: data_from(sources[0]) == b"before\nafter\n")
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
        await wait_until_async(lambda: source.backoff.failures >= 3, what="failed opens")
        assert not source.connected
        pty = Pty(link).open()
        ptys.append(pty)
        await wait_until_async(lambda: source.connected)
        pty.write(b"hello")
        await wait_until_async(lambda: bool(got))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert isinstance(got[0], SerialChunk)
    assert got[0].data == b"hello"


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
