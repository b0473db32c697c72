from __future__ import annotations

import copy
import json
import pickle

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios_instance._proto import aios_packet_pb2 as pb
from aios_instance.errors import DataDecodeError, PacketDecodeError, PacketError
from aios_instance.packet import (
    AIOSPacket,
    FileInfo,
    MuxedData,
    decode_packet,
    encode_output,
    hops_of,
    make_packet,
    packet_json,
)


def test_wire_format_field_numbers() -> None:
    fields = {f.name: f.number for f in pb.AIOSPacket.DESCRIPTOR.fields}
    assert fields == {
        "session_id": 1,
        "seq_no": 2,
        "data": 4,
        "ts": 5,
        "output_ptr": 6,
        "files": 7,
        "headers": 8,
    }
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


# -- FileList: every way in converts like assignment ---------------------------------------------


def test_files_append_extend_insert_and_setitem_convert_tuples_and_protobuf() -> None:
    packet = make_packet({"v": 1})
    packet.files.append(({"a": 1}, b"x"))
    packet.files.extend([("{}", b"y"), pb.FileInfo(metadata='{"p":1}', file_data=b"z")])
    packet.files.insert(0, ({"first": True}, b"0"))
    packet.files += [({"late": 1}, b"w")]
    assert all(isinstance(f, FileInfo) for f in packet.files)
    assert [f.file_data for f in packet.files] == [b"0", b"x", b"y", b"z", b"w"]
    packet.files[1] = ("{}", b"X")
    packet.files[3:] = [({"s": 1}, b"S")]
    assert [f.file_data for f in packet.files] == [b"0", b"X", b"y", b"S"]
    back = decode_packet(packet.SerializeToString())  # would raise on a raw tuple
    assert [f.file_data for f in back.files] == [b"0", b"X", b"y", b"S"]
    assert [f.metadata_dict() for f in back.files] == [{"first": True}, {}, {}, {"s": 1}]


def test_files_extend_on_a_decoded_packet_keeps_its_wire_files() -> None:
    raw = make_packet({"v": 1}, files=[({"n": 0}, b"a")]).SerializeToString()
    packet = decode_packet(raw)
    packet.files.extend([({"n": 1}, b"b")])
    out = decode_packet(encode_output(packet, "{}"))
    assert [f.file_data for f in out.files] == [b"a", b"b"]


def test_a_file_that_is_not_a_pair_is_refused_with_a_type_error() -> None:
    packet = AIOSPacket()
    with pytest.raises(TypeError, match="FileInfo or a"):
        packet.files.append(b"just bytes")
    with pytest.raises(TypeError, match="FileInfo or a"):
        packet.files.extend([42])
    with pytest.raises(TypeError, match="FileInfo or a"):
        packet.files.insert(0, ("{}", "not bytes"))
    assert len(packet.files) == 0


# -- MuxedData: a str json.loads accepts that also reads as its dict ------------------------------


def test_muxed_data_is_json_text_and_the_mapping() -> None:
    value = {"inputs": [{"a": 1}, None, "x"]}
    data = MuxedData(value)
    assert isinstance(data, str) and not isinstance(data, dict)
    assert json.loads(data) == value
    assert orjson.loads(str(data)) == value  # orjson reads only exact str: str(data) is that
    assert data == value and value == data and (data != value) is False
    assert data == str(data) and data != {"inputs": []} and data != "{}"
    assert "inputs" in data and "a" not in data and 0 not in data
    assert data["inputs"] == value["inputs"] and data.get("missing", 7) == 7
    assert list(data.keys()) == ["inputs"] and list(data.items()) == list(value.items())
    assert list(data.values()) == [value["inputs"]]
    text = str(data)
    assert data[0] == text[0] and data[1:4] == text[1:4] and len(data) == len(text)
    assert "".join(data) == text and hash(data) == hash(text)
    with pytest.raises(KeyError):
        data["nope"]


def test_muxed_data_copies_are_real_dicts_and_independent() -> None:
    data = MuxedData({"inputs": [[1], [2]]})
    shallow, deep = data.copy(), data.to_dict()
    assert type(shallow) is dict and type(deep) is dict
    deep["inputs"][0].append(99)
    assert data["inputs"] == [[1], [2]]
    clone = copy.deepcopy(data)
    assert type(clone) is MuxedData and clone == data and str(clone) == str(data)
    assert clone["inputs"] is not data["inputs"]
    assert copy.copy(data) is data
    again = pickle.loads(pickle.dumps(data))
    assert type(again) is MuxedData and again == {"inputs": [[1], [2]]}


def test_muxed_data_serializes_as_its_text_and_survives_packet_copies() -> None:
    packet = AIOSPacket("s", 3, data=MuxedData({"inputs": [1, 2]}), ts=1.0)
    back = decode_packet(packet.SerializeToString())
    assert type(back.data) is str and json.loads(back.data) == {"inputs": [1, 2]}
    assert packet.json() == {"inputs": [1, 2]} and back == packet
    clone = copy.deepcopy(packet)
    assert type(clone.data) is MuxedData and clone.data == {"inputs": [1, 2]}
    packet.data = json.dumps({"replaced": True})  # the spec's packet.data = json.dumps(...)
    assert decode_packet(packet.SerializeToString()).json() == {"replaced": True}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5), st.text(max_size=6))
def test_muxed_data_agrees_with_its_dict_and_its_text(value: dict[str, object], key: str) -> None:
    data = MuxedData(value)
    assert json.loads(data) == value and data == value
    assert (key in data) is (key in value)
    assert data.get(key, "default") == value.get(key, "default")
    assert dict(data.items()) == value and data.to_dict() == value
    assert copy.deepcopy(data) == value
    assert decode_packet(AIOSPacket(data=data).SerializeToString()).json() == value


# --- headers and the hop count ------------------------------------------------------------------
def test_headers_round_trip_and_an_old_packet_has_none() -> None:
    packet = AIOSPacket(session_id="s", data="{}", headers={"traceparent": "00-ab-cd-01"})
    again = AIOSPacket.FromString(packet.SerializeToString())
    assert again.headers == {"traceparent": "00-ab-cd-01"} and again == packet
    old = pb.AIOSPacket(session_id="s", seq_no=1, data="{}").SerializeToString()  # no field 8
    assert decode_packet(old).headers == {} and hops_of(decode_packet(old)) == 0


def test_an_output_counts_one_more_hop_and_keeps_the_headers() -> None:
    raw = AIOSPacket(data="{}", headers={"aios-hops": "4", "trace": "t"}).SerializeToString()
    source = decode_packet(raw)
    assert hops_of(source) == 4
    first = decode_packet(encode_output(source, '{"a": 1}'))
    second = decode_packet(encode_output(source, '{"a": 2}'))  # one source, two outputs
    assert first.headers == second.headers == {"aios-hops": "5", "trace": "t"}
    fresh = decode_packet(encode_output(AIOSPacket(data="{}"), "{}"))  # built by a block
    assert fresh.headers == {"aios-hops": "1"}


def test_a_header_the_block_set_goes_out_with_the_output() -> None:
    source = decode_packet(AIOSPacket(data="{}").SerializeToString())
    source.headers["trace"] = "set by the block"
    out = decode_packet(encode_output(source, "{}"))
    assert out.headers == {"trace": "set by the block", "aios-hops": "1"}


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "١٢", "9" * 10])
def test_a_hop_count_that_is_not_a_count_is_a_packet_error(value: str) -> None:
    packet = decode_packet(AIOSPacket(data="{}", headers={"aios-hops": value}).SerializeToString())
    with pytest.raises(PacketError, match="not a hop count"):
        hops_of(packet)
