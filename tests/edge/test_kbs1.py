"""KBS1 parser: every prefix, round trips, garbage, oversize, checksums, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.edge.kbs1 import MAX_FRAME, Kbs1Parser, checksum, encode_frame, parse_line
from kerbside.edge.model import Frame, Garbage

FRAME = Frame("S-000001", 42, 0x05, -120, 33, 471, 3600, -4.5)
LINE = (
    b"$KBS1,S-000001,42,05,-120,33,471,3600,-45*"
    + (f"{checksum(b'KBS1,S-000001,42,05,-120,33,471,3600,-45'):02X}".encode())
    + b"\r\n"
)


def frames_of(items: list[Frame | Garbage]) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def test_encode_matches_hand_written_line() -> None:
    assert encode_frame(FRAME) == LINE
    assert parse_line(LINE) == FRAME


def test_checksum_is_xor_of_body() -> None:
    body = b"KBS1,S-1,0,00,1,2,3,3000,200"
    expected = 0
    for byte in body:
        expected ^= byte
    assert checksum(body) == expected
    assert checksum(b"") == 0
    assert checksum(b"\xff") == 0xFF


def test_every_prefix_is_incomplete_then_the_frame() -> None:
    for cut in range(len(LINE)):
        parser = Kbs1Parser()
        assert parser.feed(LINE[:cut]) == [], cut
        assert parser.feed(LINE[cut:]) == [FRAME], cut
        assert parser.bad_frames == 0


def test_byte_at_a_time() -> None:
    parser = Kbs1Parser()
    out: list[Frame | Garbage] = []
    for byte in LINE * 3:
        out += parser.feed(bytes([byte]))
    assert out == [FRAME] * 3
    assert parser.frames == 3
    assert parser.bytes_seen == len(LINE) * 3


@pytest.mark.parametrize("lower", [False, True])
def test_both_hex_cases_for_checksum_and_flags(lower: bool) -> None:
    frame = Frame("abc_DEF-9", 65535, 0xAB, 32767, -32768, 0, 65535, 3276.7)
    line = encode_frame(frame, lower_hex=lower)
    line = line.replace(b",AB,", b",ab,") if lower else line
    assert Kbs1Parser().feed(line) == [frame]


def test_bad_checksum_is_garbage_and_next_frame_survives() -> None:
    bad = bytearray(LINE)
    bad[-4:-2] = b"00" if LINE[-4:-2] != b"00" else b"01"
    parser = Kbs1Parser()
    out = parser.feed(bytes(bad) + LINE)
    assert out == [Garbage(bytes(bad), "bad_checksum"), FRAME]
    assert parser.bad_frames == 1


def test_corrupted_field_fails_checksum() -> None:
    corrupted = LINE.replace(b",33,", b",34,")
    assert parse_line(corrupted) == Garbage(corrupted, "bad_checksum")


@pytest.mark.parametrize(
    "line",
    [
        b"$KBS2,S-1,1,00,1,2,3,3000,200*00\r\n",
        b"$KBS1,S 1,1,00,1,2,3,3000,200*00\r\n",
        b"$KBS1,S-1,1,0,1,2,3,3000,200*00\r\n",
        b"$KBS1,S-1,1,00,1,2,3,3000*00\r\n",
        b"$KBS1,S-1,1,00,1,2,3,3000,200,7*00\r\n",
        b"$KBS1,S-1,+1,00,1,2,3,3000,200*00\r\n",
        b"$KBS1,S-1,1,00,1,2,3,3000,200*0\r\n",
        b"$KBS1,S-1,1,00,1,2,3,3000,200\r\n",
        b"$KBS1,,1,00,1,2,3,3000,200*00\r\n",
        b"$KBS1," + b"x" * 33 + b",1,00,1,2,3,3000,200*00\r\n",
        b"$\r\n",
    ],
)
def test_malformed_lines(line: bytes) -> None:
    parser = Kbs1Parser()
    out = parser.feed(line + LINE)
    assert out[-1] == FRAME
    assert len(out) == 2
    assert isinstance(out[0], Garbage)
    assert out[0].reason == "malformed"
    assert parser.bad_frames == 1


@pytest.mark.parametrize(
    "body",
    [
        b"KBS1,S-1,65536,00,1,2,3,3000,200",
        b"KBS1,S-1,1,00,32768,2,3,3000,200",
        b"KBS1,S-1,1,00,1,-32769,3,3000,200",
        b"KBS1,S-1,1,00,1,2,3,65536,200",
        b"KBS1,S-1,1,00,1,2,3,3000,-32769",
    ],
)
def test_values_out_of_range(body: bytes) -> None:
    line = b"$" + body + f"*{checksum(body):02X}\r\n".encode()
    assert parse_line(line) == Garbage(line, "out_of_range")


def test_truncated_frame_resyncs_on_next_dollar() -> None:
    parser = Kbs1Parser()
    out = parser.feed(LINE[:20] + LINE)
    assert out == [Garbage(LINE[:20], "truncated"), FRAME]
    assert parser.bad_frames == 1


def test_noise_between_frames_is_not_a_bad_frame() -> None:
    parser = Kbs1Parser()
    out = parser.feed(b"\x00\xff junk\r\n" + LINE + b"zz" + LINE)
    assert frames_of(out) == [FRAME, FRAME]
    assert [g.reason for g in out if isinstance(g, Garbage)] == ["noise", "noise"]
    assert parser.bad_frames == 0


def test_oversize_line_is_dropped_until_next_dollar() -> None:
    long_line = b"$KBS1," + b"9" * 300 + b"\r\n"
    parser = Kbs1Parser()
    out = parser.feed(long_line[:100])
    assert out == []
    out += parser.feed(long_line[100:] + LINE)
    assert frames_of(out) == [FRAME]
    assert {g.reason for g in out if isinstance(g, Garbage)} == {"oversize"}
    assert parser.bad_frames == 1


def test_line_of_max_frame_bytes_boundary() -> None:
    # A valid frame whose seq is zero-padded to make the line exactly 128 bytes: a decimal in
    # range is one however many zeros lead it, so that line is a frame, one byte more is noise.
    base = b"KBS1,S-1,{seq},00,1,2,3,3000,200"
    short = b"$" + base.replace(b"{seq}", b"7") + b"*00\r\n"
    width = MAX_FRAME - len(short) + 1
    body128 = base.replace(b"{seq}", b"7".rjust(width, b"0"))
    line128 = b"$" + body128 + f"*{checksum(body128):02X}\r\n".encode()
    assert len(line128) == MAX_FRAME
    parser = Kbs1Parser()
    assert parser.feed(line128 + LINE) == [Frame("S-1", 7, 0, 1, 2, 3, 3000, 20.0), FRAME]
    assert parser.bad_frames == 0
    body129 = base.replace(b"{seq}", b"7".rjust(width + 1, b"0"))
    line129 = b"$" + body129 + f"*{checksum(body129):02X}\r\n".encode()
    out = Kbs1Parser().feed(line129)
    assert out[0] == Garbage(line129[:MAX_FRAME], "oversize")


@pytest.mark.parametrize(
    ("body", "frame"),
    [
        (
            b"KBS1,S-1,00042,05,-0120,0033,00471,03600,-045",
            Frame("S-1", 42, 5, -120, 33, 471, 3600, -4.5),
        ),
        (b"KBS1,S-1,0,00,-0,0,-00000,0,-0", Frame("S-1", 0, 0, 0, 0, 0, 0, 0.0)),
        (
            b"KBS1,S-1,0065535,00,-032768,032767,0,065535,-0032768",
            Frame("S-1", 65535, 0, -32768, 32767, 0, 65535, -3276.8),
        ),
    ],
)
def test_leading_zeros_are_decimals_like_any_other(body: bytes, frame: Frame) -> None:
    line = b"$" + body + f"*{checksum(body):02X}\r\n".encode()
    assert parse_line(line) == frame


def test_zero_padding_does_not_bring_a_value_into_range() -> None:
    body = b"KBS1,S-1,00065536,00,1,2,3,3000,200"
    line = b"$" + body + f"*{checksum(body):02X}\r\n".encode()
    assert parse_line(line) == Garbage(line, "out_of_range")


def test_bare_newline_ending_is_accepted() -> None:
    assert Kbs1Parser().feed(LINE[:-2] + b"\n") == [FRAME]


frames_strategy = st.builds(
    Frame,
    sensor_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    seq=st.integers(0, 65535),
    flags=st.integers(0, 255),
    mx=st.integers(-32768, 32767),
    my=st.integers(-32768, 32767),
    mz=st.integers(-32768, 32767),
    battery_mv=st.integers(0, 65535),
    temp_c=st.integers(-32768, 32767).map(lambda d: d / 10),
)


@given(frames_strategy, st.booleans())
def test_round_trip(frame: Frame, lower: bool) -> None:
    assert Kbs1Parser().feed(encode_frame(frame, lower_hex=lower)) == [frame]


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_never_raise(chunks: list[bytes]) -> None:
    parser = Kbs1Parser()
    total = 0
    for chunk in chunks:
        for item in parser.feed(chunk):
            assert isinstance(item, Frame | Garbage)
        total += len(chunk)
    assert parser.bytes_seen == total


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.binary(max_size=200), frames_strategy), min_size=1, max_size=8),
    st.binary(max_size=50),
    st.lists(st.integers(1, 400), max_size=10),
)
def test_frames_in_noise_come_out_exactly_once(
    pieces: list[tuple[bytes, Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(noise + encode_frame(frame) for noise, frame in pieces) + tail
    parser = Kbs1Parser()
    out: list[Frame | Garbage] = []
    pos = 0
    for cut in cuts:
        out += parser.feed(stream[pos : pos + cut])
        pos += cut
    out += parser.feed(stream[pos:])
    # Random noise holding a whole valid frame with its checksum is beyond chance here.
    assert frames_of(out) == [frame for _, frame in pieces]
