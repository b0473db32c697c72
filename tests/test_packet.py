from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios_instance._proto import aios_packet_pb2 as pb
from aios_instance.errors import DataDecodeError, PacketDecodeError
from aios_instance.packet import (
    AIOSPacket,
    FileInfo,
    decode_packet,
    encode_output,
    make_packet,
    packet_json,
)


def test_wire_format_field_numbers() -> None:
    fields = {f.name: f.number for f in pb.AIOSPacket.DESCRIPTOR.fields}
    assert fields == {"session_id": 1, "seq_no": 2, "data": 4, "ts": 5, "output_ptr": 6, "files": 7}
    assert {f.name: f.number for f in pb.FileInfo.DESCRIPTOR.fields} == {
        "metadata": 1,
        "file_data": 2,
    }
    assert pb.AIOSPacket.DESCRIPTOR.file.package == ""


def test_round_trip_with_files() -> None:
    packet = make_packet(
        {"value": 0.7}, files=[({"name": "a.jpg"}, b"\xff\xd8")], session_id="s", seq_no=9, ts=1.5
    )
    again = AIOSPacket.FromString(packet.SerializeToString())
    assert again == packet
    assert again.json() == {"value": 0.7}
    assert again.files[0].metadata_dict() == {"name": "a.jpg"}
    assert again.files[0].file_data == b"\xff\xd8"
    # The generated message reads our bytes: the wire format is the contract.
    msg = pb.AIOSPacket.FromString(packet.SerializeToString())
    assert (msg.session_id, msg.seq_no, msg.ts) == ("s", 9, 1.5)


def test_dict_data_is_json_encoded_on_the_wire() -> None:
    packet = AIOSPacket(session_id="s", data={"inputs": [{"a": 1}, {"a": 2}]})
    decoded = decode_packet(packet.SerializeToString())
    assert isinstance(decoded.data, str)
    assert packet_json(decoded) == {"inputs": [{"a": 1}, {"a": 2}]}


def test_protobuf_style_surface() -> None:
    packet = AIOSPacket()
    raw = make_packet({"x": 1}, session_id="a").SerializeToString()
    assert packet.ParseFromString(raw) == len(raw)
    assert packet.session_id == "a"
    other = AIOSPacket()
    other.CopyFrom(packet)
    assert other == packet and other is not packet
    other.files.add(metadata={"k": "v"}, file_data=b"1")
    assert len(other.files) == 1 and len(packet.files) == 0
    assert other.ByteSize() == len(other.SerializeToString())
    other.Clear()
    assert other == AIOSPacket()


def test_files_assignment_accepts_tuples_and_fileinfo() -> None:
    packet = AIOSPacket()
    packet.files = [({"a": 1}, b"x"), FileInfo("{}", b"y")]
    assert [f.file_data for f in packet.files] == [b"x", b"y"]
    packet.files.add("{}", b"z")
    assert len(packet.files) == 3


def test_deepcopy_is_independent() -> None:
    packet = AIOSPacket(data={"inputs": [1]}, files=[({"a": 1}, b"x")])
    clone = copy.deepcopy(packet)
    clone.data["inputs"].append(2)
    clone.files.append(FileInfo("{}", b""))
    assert packet.data == {"inputs": [1]} and len(packet.files) == 1


def test_decode_errors_are_classified() -> None:
    with pytest.raises(PacketDecodeError, match="not a valid AIOSPacket"):
        decode_packet(b"\xff\xff\xff\xff")
    with pytest.raises(DataDecodeError) as err:
        packet_json(AIOSPacket(session_id="s", seq_no=3, data="{nope"))
    assert (err.value.session_id, err.value.seq_no) == ("s", 3)


def test_encode_output_keeps_identity_and_routing() -> None:
    source = make_packet({"v": 1}, session_id="s", seq_no=4, ts=2.0, output_ptr={"outputs": []})
    out = decode_packet(encode_output(source, '{"r":1}'))
    assert (out.session_id, out.seq_no, out.ts) == ("s", 4, 2.0)
    assert out.output_ptr == '{"outputs":[]}' and out.data == '{"r":1}'


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_packet_decode_error(raw: bytes) -> None:
    try:
        packet = decode_packet(raw)
    except PacketDecodeError:
        return
    assert isinstance(packet.session_id, str)


@given(
    st.text(max_size=20),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_round_trip_property(session: str, seq: int, data: dict[str, object], ts: float) -> None:
    packet = make_packet(data, session_id=session, seq_no=seq, ts=ts)
    again = decode_packet(packet.SerializeToString())
    assert again == packet
    assert again.json() == data
