"""Frames: every captured frame parses to its documented fields and round-trips."""

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vectors import VECTORS, direction_of, frame_bytes, parsed

from octolux import lxp
from octolux.lxp.crc import crc16_modbus
from octolux.lxp.frames import FrameError

FROM_DONGLE = lxp.Direction.FROM_DONGLE
TO_DONGLE = lxp.Direction.TO_DONGLE

# What the vectors' "frame" objects call each field, mapped to our attributes.
_FRAME_ATTRIBUTES = {"datalog": "datalog", "inverter": "inverter", "register": "register"}


def test_crc_matches_the_modbus_check_value():
    assert crc16_modbus(b"123456789") == 0x4B37


def test_every_vector_round_trips_byte_for_byte(vector):
    data = bytes.fromhex(vector["hex"])
    direction = direction_of(vector["name"])
    frame = lxp.parse(data, direction)
    assert lxp.build(frame) == data
    assert lxp.parse(lxp.build(frame), direction) == frame


def test_every_vector_parses_to_its_documented_frame_fields(vector):
    documented = vector["decoded"]["frame"]
    frame = parsed(vector["name"])
    assert frame.protocol == documented["protocol"]
    assert frame.tcp_function == documented["tcp_function"]
    for key, attribute in _FRAME_ATTRIBUTES.items():
        if key in documented:
            assert getattr(frame, attribute) == documented[key], key
    if "address" in documented:
        assert frame.address == documented["address"]
    if "device_function" in documented:
        function = documented["device_function"]
        if isinstance(frame, lxp.ExceptionReply):
            assert frame.function | 0x80 == function
            assert frame.code == documented["exception_code"]
        else:
            assert frame.function == function


_WITH_REGISTERS = sorted(
    name for name, v in VECTORS.items()
    if "raw_registers" in v["decoded"] or name.startswith("read_hold_reply")
)


@pytest.mark.parametrize("name", _WITH_REGISTERS)
def test_read_replies_give_their_documented_raw_registers(name):
    decoded = VECTORS[name]["decoded"]
    expected = decoded.get("raw_registers") or decoded["registers"]
    frame = parsed(name)
    assert {str(r): v for r, v in frame.registers.items()} == expected


def test_the_register_vectors_are_all_found():
    assert len(_WITH_REGISTERS) == 6


def test_requests_and_replies_are_told_apart_by_who_sent_them():
    # A write-single request and its ack are the same length and differ only
    # in protocol and the address byte, which real replies do not always set.
    request = lxp.parse(frame_bytes("write_single_request_reg66_100"), TO_DONGLE)
    ack = lxp.parse(frame_bytes("write_single_ack_reg66_100"), FROM_DONGLE)
    assert isinstance(request, lxp.WriteSingleRequest)
    assert isinstance(ack, lxp.WriteSingleReply)
    assert (request.register, request.value) == (ack.register, ack.value) == (66, 100)
    assert (request.address, ack.address) == (0, 1)


@pytest.mark.parametrize("name", ["read_input_reply_reg0", "read_hold_reply_reg12_time",
                                  "write_single_ack_reg66_100", "write_multi_ack",
                                  "exception_reply_write_single_reg21_illegal_value"])
def test_a_reply_with_address_byte_0_is_a_reply_that_keeps_its_byte(name):
    # BJ and DG dongles and EG4 inverters answer with address 0, as clients ask.
    frame = attrs.evolve(parsed(name), address=0)
    data = lxp.build(frame)
    assert data[20] == 0
    again = lxp.parse(data, FROM_DONGLE)
    assert again == frame
    assert type(again) is type(parsed(name))
    assert lxp.build(again) == data


def test_an_exception_reply_with_address_0_names_its_code():
    data = lxp.build(lxp.ExceptionReply(
        lxp.DeviceFunction.WRITE_SINGLE, "2222222222", "5555555555", 21, 3, address=0))
    assert len(data) == 37
    frame = lxp.parse(data, FROM_DONGLE)
    assert (type(frame), frame.reason, frame.address) == (lxp.ExceptionReply, "ILLEGAL_VALUE", 0)
    with pytest.raises(FrameError, match="unknown device function 134 in a request"):
        lxp.parse(data, TO_DONGLE)


def test_a_protocol_1_reply_of_one_value_has_the_shape_of_a_request():
    # Byte for byte the same: only who sent it tells a count from a value.
    data = frame_bytes("read_hold_request_reg12_count3")
    request = lxp.parse(data, TO_DONGLE)
    reply = lxp.parse(data, FROM_DONGLE)
    assert (type(request), request.count) == (lxp.ReadRequest, 3)
    assert (type(reply), reply.values, reply.protocol, reply.address) == (
        lxp.ReadReply, (3,), 1, 0)
    assert lxp.build(request) == lxp.build(reply) == data


_PROTOCOL_2_READ = lxp.build(lxp.ReadRequest(
    lxp.DeviceFunction.READ_INPUT, "2222222222", "5555555555", 0, 40, protocol=2))


@pytest.mark.parametrize(("data", "direction", "reason"), [
    (frame_bytes("write_multi_request_time"), FROM_DONGLE,
     "multi write reply must carry a 2-byte count"),
    (_PROTOCOL_2_READ, FROM_DONGLE, "read reply byte count does not match its values"),
    (frame_bytes("read_input_reply_reg0"), TO_DONGLE, "read request must carry a 2-byte count"),
    (frame_bytes("write_multi_ack"), TO_DONGLE, "multi write too short"),
], ids=["multi write request from the dongle", "protocol 2 read request from the dongle",
        "read reply to the dongle", "multi write ack to the dongle"])
def test_a_frame_that_does_not_fit_its_direction_is_a_bad_frame(data, direction, reason):
    with pytest.raises(FrameError) as caught:
        lxp.parse(data, direction)
    assert caught.value.reason == reason


def test_any_address_byte_is_kept_as_it_came():
    frame = attrs.evolve(parsed("read_input_reply_reg40"), address=0x7F)
    assert lxp.parse(lxp.build(frame), FROM_DONGLE).address == 0x7F


def test_parse_wants_a_direction():
    with pytest.raises(TypeError, match="not a Direction"):
        lxp.parse(frame_bytes("read_input_reply_reg0"), "from the dongle")
    with pytest.raises(TypeError, match="not a Direction"):
        lxp.FrameDecoder("from the dongle")


def test_write_multi_request_with_protocol_2_is_still_a_request():
    frame = parsed("write_multi_request_time")
    assert isinstance(frame, lxp.WriteMultiRequest)
    assert frame.values == (1558, 5139, 8471)


def test_read_requests_carry_their_count():
    frame = parsed("read_hold_request_reg12_count3")
    assert frame == lxp.ReadRequest(
        lxp.DeviceFunction.READ_HOLD, "2222222222", "5555555555", 12, 3, protocol=1
    )


def test_exception_reply_names_its_code():
    frame = parsed("exception_reply_write_single_reg21_illegal_value")
    assert isinstance(frame, lxp.ExceptionReply)
    assert frame.function == lxp.DeviceFunction.WRITE_SINGLE
    assert frame.reason == "ILLEGAL_VALUE"
    assert len(lxp.build(frame)) == 37


def test_param_frames():
    assert parsed("read_param_request_param7") == lxp.ReadParamRequest(
        "2222222222", 7
    )
    reply = parsed("read_param_reply_param0_300s")
    assert isinstance(reply, lxp.ReadParamReply)
    assert (reply.register, reply.number) == (0, 300)
    assert parsed("write_param_reply") == lxp.WriteParamReply(
        "2222222222", 7, 3
    )


def test_the_127_register_frame_is_a_read_reply_of_127_values():
    frame = parsed("read_input_all_reply_protocol5_127regs")
    assert frame.protocol == 5
    assert len(frame.values) == 127
    assert len(lxp.build(frame)) == 291


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "bad CRC"),
        (lambda b: b[:30] + bytes([b[30] ^ 0x01]) + b[31:], "bad CRC"),
        (lambda b: b"\xa1\x1b" + b[2:], "no A1 1A prefix"),
        (lambda b: b[:-2], "frame length field does not match the frame"),
        (lambda b: b[:10], "too short for a frame header"),
    ],
)
def test_invalid_frames_raise_frame_error_with_the_reason(mutate, reason):
    with pytest.raises(FrameError) as caught:
        lxp.parse(mutate(frame_bytes("read_input_reply_reg0")), FROM_DONGLE)
    assert caught.value.reason == reason


def _with_length_field(data: bytes, total: int) -> bytes:
    return data[:4] + (total - 6).to_bytes(2, "little") + data[6:]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # Frames without a CRC must fit their kind's layout.
        (frame_bytes("heartbeat") + b"\x00", "heartbeat not 19 bytes"),
        (frame_bytes("heartbeat")[:-1], "heartbeat not 19 bytes"),
        (frame_bytes("read_param_reply_param0_300s") + b"\x00", "param value length does not "
         "match the frame"),
        (frame_bytes("read_param_request_param7") + b"\x00", "param frame fits no param layout"),
        (frame_bytes("write_param_reply")[:-1], "param frame fits no param layout"),
    ],
    ids=["long heartbeat", "short heartbeat", "param value too short", "read param 21 bytes",
         "write param 20 bytes"],
)
def test_crc_less_frames_that_do_not_fit_their_kind_are_refused(data, reason):
    with pytest.raises(FrameError) as caught:
        lxp.parse(_with_length_field(data, len(data)), FROM_DONGLE)
    assert caught.value.reason == reason


def test_heartbeats_are_one_fixed_size():
    assert len(lxp.build(lxp.Heartbeat("2222222222", 5, b"\x07"))) == 19
    with pytest.raises(ValueError, match="trailer must be one byte"):
        lxp.Heartbeat("2222222222", 2, b"\x00\x00")


def test_unknown_tcp_function_is_kept_whole():
    frame = lxp.UnknownFrame(0xC7, "2222222222", b"\x01\x02\x03")
    data = lxp.build(frame)
    assert lxp.parse(data, FROM_DONGLE) == lxp.parse(data, TO_DONGLE) == frame


def test_frames_validate_their_fields():
    with pytest.raises(ValueError, match="datalog"):
        lxp.Heartbeat("short")
    with pytest.raises(ValueError, match="value"):
        lxp.WriteSingleRequest("2222222222", "5555555555", 65, 70000)
    with pytest.raises(ValueError):
        lxp.ReadRequest(lxp.DeviceFunction.WRITE_SINGLE, "2222222222", "5555555555", 0, 40)


# -- property tests: random valid frames round-trip ---------------------------

serials = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=10,
                  max_size=10)
u16 = st.integers(0, 0xFFFF)
read_functions = st.sampled_from([lxp.DeviceFunction.READ_HOLD, lxp.DeviceFunction.READ_INPUT])
protocols = st.sampled_from([1, 2, 5])
register_values = st.lists(u16, min_size=1, max_size=127).map(tuple)
addresses = st.integers(0, 255)  # 0 and 1 on real dongles, either way round

frames = st.one_of(
    st.builds(lxp.Heartbeat, serials, st.sampled_from([2, 5]), st.binary(min_size=1, max_size=1)),
    st.builds(lxp.ReadRequest, read_functions, serials, serials, u16, u16, protocols, addresses),
    st.builds(lxp.ReadReply, read_functions, serials, serials, u16, register_values,
              st.sampled_from([2, 5]), addresses),
    st.builds(lxp.ReadReply, read_functions, serials, serials, u16,
              st.tuples(u16), st.just(1), addresses),
    st.builds(lxp.WriteSingleRequest, serials, serials, u16, u16, protocols, addresses),
    st.builds(lxp.WriteSingleReply, serials, serials, u16, u16, protocols, addresses),
    st.builds(lxp.WriteMultiRequest, serials, serials, u16, register_values, protocols,
              addresses),
    st.builds(lxp.WriteMultiReply, serials, serials, u16, u16, protocols, addresses),
    st.builds(lxp.ExceptionReply, st.sampled_from(list(lxp.DeviceFunction)), serials, serials,
              u16, st.integers(0, 255), protocols, addresses),
    st.builds(lxp.ReadParamRequest, serials, u16),
    st.builds(lxp.ReadParamReply, serials, u16, st.binary(max_size=20)),
    st.builds(lxp.WriteParamRequest, serials, u16, st.binary(max_size=20)),
    st.builds(lxp.WriteParamReply, serials, u16, st.integers(0, 255)),
)


def sent_by(frame) -> lxp.Direction:
    """Who sends a frame of this kind: a client its requests, the dongle the rest."""
    return TO_DONGLE if isinstance(frame, lxp.frames.REQUESTS) else FROM_DONGLE


@given(frames)
def test_random_valid_frames_round_trip(frame):
    data = lxp.build(frame)
    assert lxp.parse(data, sent_by(frame)) == frame
    assert lxp.build(lxp.parse(data, sent_by(frame))) == data


@given(frames)
def test_every_frame_field_survives_the_round_trip(frame):
    # Compare field by field, so that a failure names the field.
    again = lxp.parse(lxp.build(frame), sent_by(frame))
    for field in attrs.fields(type(frame)):
        assert getattr(again, field.name) == getattr(frame, field.name), field.name


def _validated_copy(frame):
    """``frame`` built again through its ``__init__``: its validators and converters."""
    return type(frame)(*attrs.astuple(frame, recurse=False))


# parse builds frames without running their validators (it has checked the
# bytes already); these make sure it never builds one that they would refuse.


@given(frames)
def test_parsed_frames_pass_the_validators_they_skipped(frame):
    again = lxp.parse(lxp.build(frame), sent_by(frame))
    copy = _validated_copy(again)
    assert copy == again
    # A device function must come out as an enum member, as the converter makes it.
    assert type(getattr(again, "function", None)) is type(getattr(copy, "function", None))


def _checksummed(address: int, function: int, section: bytes, protocol: int) -> bytes:
    data = bytes([address, function]) + b"5555555555\x00\x00" + section
    data += crc16_modbus(data).to_bytes(2, "little")
    payload = len(data).to_bytes(2, "little") + data
    return _outer(protocol, 0xC2, payload)


def _outer(protocol: int, tcp_function: int, payload: bytes) -> bytes:
    length = (len(payload) + 12).to_bytes(2, "little")
    return b"\xa1\x1a" + protocol.to_bytes(2, "little") + length + bytes([1, tcp_function]) + (
        b"2222222222" + payload
    )


any_frame_bytes = st.one_of(
    st.builds(_checksummed, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=260),
              st.sampled_from([1, 2, 5])),
    st.builds(_outer, st.sampled_from([1, 2, 5]), st.integers(0xC0, 0xCF), st.binary(max_size=30)),
)


@given(any_frame_bytes, st.sampled_from(list(lxp.Direction)))
def test_whatever_parses_passes_the_validators(data, direction):
    try:
        frame = lxp.parse(data, direction)
    except FrameError:
        return
    assert _validated_copy(frame) == frame
    assert lxp.build(frame) == data


def test_frames_built_by_callers_are_still_validated():
    datalog, serial = "2222222222", "5555555555"
    read_input = lxp.DeviceFunction.READ_INPUT
    with pytest.raises(ValueError, match="1 to 127 values"):
        lxp.ReadReply(read_input, datalog, serial, 0, tuple(range(128)))
    with pytest.raises(ValueError, match="integers 0-65535"):
        lxp.ReadReply(read_input, datalog, serial, 0, (1, 65536))
    with pytest.raises(ValueError, match="exactly one value"):
        lxp.ReadReply(read_input, datalog, serial, 0, (1, 2), protocol=1)
    with pytest.raises(ValueError, match="not a device function"):
        lxp.ReadRequest(7, datalog, serial, 0, 40)
    with pytest.raises(ValueError, match="inverter"):
        lxp.WriteSingleRequest(datalog, "short", 21, 0)
    with pytest.raises(ValueError, match="code"):
        lxp.ExceptionReply(lxp.DeviceFunction.WRITE_SINGLE, datalog, serial, 21, 256)


def test_vectors_cover_every_frame_kind_we_parse():
    kinds = {type(parsed(name)).__name__ for name in VECTORS}
    assert kinds >= {
        "Heartbeat", "ReadRequest", "ReadReply", "WriteSingleRequest", "WriteSingleReply",
        "WriteMultiRequest", "WriteMultiReply", "ExceptionReply", "ReadParamRequest",
        "ReadParamReply", "WriteParamReply",
    }


def _bytewise_crc(data):
    # The textbook bit-by-bit definition, to check the table-driven one against.
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@given(st.binary(max_size=600))
def test_crc_matches_the_textbook_definition_for_any_length(data):
    assert crc16_modbus(data) == _bytewise_crc(data)
    assert crc16_modbus(memoryview(data)) == _bytewise_crc(data)


@given(st.binary(max_size=100), st.integers(0, 100), st.integers(0, 100))
def test_crc_of_a_range_is_the_crc_of_that_slice(data, start, stop):
    start, stop = min(start, stop, len(data)), min(max(start, stop), len(data))
    assert crc16_modbus(data, start, stop) == _bytewise_crc(data[start:stop])


@pytest.mark.parametrize("value", ["short", "elevenchars", 1234567890, None, "\u20ac" * 10])
def test_check_serial_refuses_what_no_frame_can_carry(value):
    with pytest.raises(ValueError, match="datalog must be 10 characters"):
        lxp.check_serial(value, "datalog")


def test_check_serial_returns_a_good_serial():
    assert lxp.check_serial("BA12345678") == "BA12345678"
    assert lxp.check_serial("\xe9" * 10) == "\xe9" * 10  # any 8-bit text fits a frame


def test_param_values_are_u16_low_byte_first():
    assert lxp.param_value(300) == b"\x2c\x01"
    request = lxp.WriteParamRequest("2222222222", 0, lxp.param_value(60))
    assert lxp.parse(lxp.build(request), TO_DONGLE).number == 60
