from __future__ import annotations

import struct

from kerbside.sim.ble import ADVERT_LEN, ble_sensor_id, encode_advert
from kerbside.sim.kbs1 import checksum, encode_frame
from tests.sim.simtools import LINE_RE, valid_lines, xor


def test_frame_matches_grammar_and_checksum() -> None:
    line = encode_frame("S-000001", 42, 0x05, -12, 300, -32768, 3600, -45)
    assert line == b"$KBS1,S-000001,42,05,-12,300,-32768,3600,-45*" + line[-4:]
    assert LINE_RE.fullmatch(line)
    body = line[1 : line.index(b"*")]
    assert int(line[-4:-2], 16) == xor(body) == checksum(body)
    assert line.endswith(b"\r\n")
    assert len(line) <= 128


def test_lower_hex_checksum_is_the_same_value() -> None:
    upper = encode_frame("ab", 1, 0x0F, 1, 2, 3, 4, 5)
    lower = encode_frame("ab", 1, 0x0F, 1, 2, 3, 4, 5, lower_hex=True)
    assert upper.lower() == lower.lower()
    assert valid_lines(lower)
    assert valid_lines(upper)


def test_advert_layout() -> None:
    payload = encode_advert(0xDEADBEEF, 65535, 0x09, -1, 2, -300, 3300, -5)
    assert len(payload) == ADVERT_LEN == 17
    fields = struct.unpack("<BIHBhhhHb", payload)
    assert fields == (1, 0xDEADBEEF, 65535, 0x09, -1, 2, -300, 3300, -5)
    assert ble_sensor_id(0xDEADBEEF) == "BLE-DEADBEEF"
