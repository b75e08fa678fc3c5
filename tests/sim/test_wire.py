"""Line faults, as properties: whatever the frame and the dice, a corrupted or truncated line
never passes for a valid one, and noise never hides or invents a frame."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.sim.kbs1 import encode_frame
from kerbside.sim.scenario import WireFaults
from kerbside.sim.sensor import SentFrame
from kerbside.sim.wire import PortReader, _corrupt, _truncate, line_noise, serial_emission
from tests.sim.simtools import valid_lines

i16 = st.integers(-32768, 32767)
frames = st.builds(
    SentFrame,
    t=st.integers(0, 2**41),
    sensor=st.just(0),
    seq=st.integers(0, 65535),
    flags=st.integers(0, 255),
    mx=i16,
    my=i16,
    mz=i16,
    battery_mv=st.integers(0, 65535),
    temp_dc=i16,
    silent=st.just(False),
)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)


def line_of(frame: SentFrame, sensor_id: str, lower: bool) -> bytes:
    return encode_frame(
        sensor_id,
        frame.seq,
        frame.flags,
        frame.mx,
        frame.my,
        frame.mz,
        frame.battery_mv,
        frame.temp_dc,
        lower_hex=lower,
    )


@settings(max_examples=300, deadline=None)
@given(frames, ids, st.booleans(), st.integers(0, 2**32))
def test_corrupted_and_truncated_lines_are_never_valid(
    frame: SentFrame, sensor_id: str, lower: bool, seed: int
) -> None:
    line = line_of(frame, sensor_id, lower)
    assert len(valid_lines(line)) == 1
    rng = random.Random(seed)
    assert valid_lines(_corrupt(line, rng)) == []
    assert valid_lines(_truncate(line, rng)) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(frames, ids), min_size=1, max_size=8), st.integers(0, 2**32))
def test_noise_and_chunking_neither_hide_nor_invent_frames(
    items: list[tuple[SentFrame, str]], seed: int
) -> None:
    rng = random.Random(seed)
    faults = WireFaults(lost=0.2, corrupted=0.2, truncated=0.2, duplicated=0.2, noise_before=0.5)
    reader = PortReader(0, random.Random(seed + 1))
    emissions = [
        serial_emission(f, sensor_id=sid, port=0, lower_hex=False, rng=rng, faults=faults)
        for f, sid in items
    ]
    chunks = []
    t = 0
    for e in emissions:
        t += rng.randint(0, 200)
        chunks.extend(reader.feed(t, e.data))
    chunks.extend(reader.flush())
    stream = b"".join(c.data for c in chunks)
    assert stream == b"".join(e.data for e in emissions)
    assert [c.t for c in chunks] == sorted(c.t for c in chunks)
    want = []
    for e, (f, sid) in zip(emissions, items, strict=True):
        copies = {"ok": 1, "duplicated": 2}.get(e.fate, 0)
        want.extend([(sid.encode(), f.seq)] * copies)
    assert [(m.group(2), int(m.group(3))) for m in valid_lines(stream)] == want


@given(st.integers(0, 2**32))
def test_line_noise_is_short(seed: int) -> None:
    noise = line_noise(random.Random(seed))
    assert 1 <= len(noise) <= 24
