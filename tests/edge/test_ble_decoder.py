"""BLE advertisement decoder (docs/protocols.md): round trips, every wrong length, any bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerbside.edge.ble import ADVERT_LEN, BleDecoder, decode_payload, encode_payload
from kerbside.edge.model import Frame, Garbage
from kerbside.edge.sources.base import BleAdvert

# Hand-packed, little-endian: version 1, serial 0xDEADBEEF, seq 0x1234, flags 0x05,
# mx -2, my 300, mz -32768, battery 3600, temperature -7 C.
PAYLOAD = bytes.fromhex("01efbeadde341205feff2c010080100ef9")
FRAME = Frame("BLE-DEADBEEF", 0x1234, 0x05, -2, 300, -32768, 3600, -7.0)


def test_decodes_a_hand_packed_payload() -> None:
    assert len(PAYLOAD) == ADVERT_LEN == 17
    assert decode_payload(PAYLOAD) == FRAME
    assert encode_payload(FRAME) == PAYLOAD


def test_sensor_id_is_upper_hex_of_the_serial() -> None:
    payload = b"\x01" + struct.pack("<I", 0x00AB12CD) + bytes(12)
    item = decode_payload(payload)
    assert isinstance(item, Frame)
    assert item.sensor_id == "BLE-00AB12CD"


@pytest.mark.parametrize("length", [n for n in range(40) if n != ADVERT_LEN])
def test_every_wrong_length_is_counted_and_ignored(length: int) -> None:
    payload = (PAYLOAD * 3)[:length]
    assert decode_payload(payload) == Garbage(payload, "bad_length")
    decoder = BleDecoder()
    assert decoder.decode_mfr({0xFFFF: payload}) == [Garbage(payload, "bad_length")]
    assert (decoder.adverts, decoder.bad_frames) == (1, 1)


@pytest.mark.parametrize("version", [0, 2, 0x81, 0xFF])
def test_other_versions_are_counted_and_ignored(version: int) -> None:
    payload = bytes([version]) + PAYLOAD[1:]
    assert decode_payload(payload) == Garbage(payload, "bad_version")


def test_decoder_uses_its_company_id_only() -> None:
    decoder = BleDecoder(company_id=0x0590)
    assert decoder.decode_mfr({0xFFFF: PAYLOAD}) == []
    assert decoder.foreign == 1
    assert decoder.decode_mfr({0xFFFF: PAYLOAD, 0x0590: PAYLOAD}) == [FRAME]
    assert (decoder.adverts, decoder.bytes_seen, decoder.bad_frames) == (1, 17, 0)


def test_decoder_takes_a_source_advert() -> None:
    advert = BleAdvert("ble", 0, "C0:FF:EE:00:00:01", -71, {0xFFFF: PAYLOAD})
    assert BleDecoder().decode(advert) == [FRAME]


frames = st.builds(
    Frame,
    sensor_id=st.integers(0, 0xFFFFFFFF).map(lambda n: f"BLE-{n:08X}"),
    seq=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFF),
    mx=st.integers(-32768, 32767),
    my=st.integers(-32768, 32767),
    mz=st.integers(-32768, 32767),
    battery_mv=st.integers(0, 0xFFFF),
    temp_c=st.integers(-128, 127).map(float),
)


@given(frames)
def test_round_trip(frame: Frame) -> None:
    payload = encode_payload(frame)
    assert len(payload) == ADVERT_LEN
    assert decode_payload(payload) == frame


@given(st.binary(max_size=64), st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40)))
def test_any_bytes_never_raise(payload: bytes, mfr: dict[int, bytes]) -> None:
    item = decode_payload(payload)
    assert isinstance(item, Frame | Garbage)
    decoder = BleDecoder()
    for out in decoder.decode_mfr(mfr):
        assert isinstance(out, Frame | Garbage)
    assert decoder.adverts + decoder.foreign == 1
