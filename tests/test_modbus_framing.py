"""Modbus PDUs, TCP and RTU frames and their stream decoders: pure, no reactor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octolux.lxp.framer import BadFrame
from octolux.modbus import (
    ExceptionResponse,
    Function,
    Message,
    ModbusError,
    ReadRequest,
    ReadResponse,
    RtuDecoder,
    TcpDecoder,
    WriteMultipleRequest,
    WriteMultipleResponse,
    WriteSingle,
    answers,
    decode_request,
    decode_response,
    encode,
    encode_rtu,
    encode_tcp,
    silence_seconds,
)

# Frames worked out by hand from the Modbus specification (and its CRC
# example: unit 1, read holding 0 count 10 is 01 03 00 00 00 0A C5 CD).
READ_HOLDING_RTU = bytes.fromhex("01030000000AC5CD")
READ_INPUT_REPLY = Message(1, ReadResponse(Function.READ_INPUT, (0x1234, 0x0001)))


def test_a_read_request_is_big_endian_with_its_known_crc():
    message = Message(1, ReadRequest(Function.READ_HOLDING, 0, 10))
    assert encode_rtu(message) == READ_HOLDING_RTU


def test_registers_are_big_endian_on_the_wire():
    assert encode(READ_INPUT_REPLY.pdu) == bytes.fromhex("0404" "1234" "0001")


def test_a_tcp_frame_has_the_mbap_header():
    message = Message(7, WriteSingle(21, 0x0102), transaction=0xABCD)
    assert encode_tcp(message) == bytes.fromhex("ABCD" "0000" "0006" "07" "06" "0015" "0102")


def test_an_exception_response_sets_the_high_bit():
    assert encode(ExceptionResponse(3, 2)) == b"\x83\x02"
    assert decode_response(b"\x83\x02") == ExceptionResponse(3, 2)


@pytest.mark.parametrize("pdu", [
    ReadRequest(Function.READ_INPUT, 120, 40),
    WriteSingle(64, 100),
    WriteMultipleRequest(12, (0x1A0B, 0x0C0D, 0x0E0F)),
])
def test_requests_round_trip(pdu):
    assert decode_request(encode(pdu)) == pdu


@pytest.mark.parametrize("pdu", [
    ReadResponse(Function.READ_HOLDING, tuple(range(40))),
    WriteSingle(64, 100),
    WriteMultipleResponse(12, 3),
    ExceptionResponse(16, 3),
])
def test_responses_round_trip(pdu):
    assert decode_response(encode(pdu)) == pdu


@pytest.mark.parametrize("data, reason", [
    (b"", "empty PDU"),
    (b"\x2b\x0e\x01\x00", "unknown function 43"),
    (b"\x04\x00\x00\x00\x00", "read request: count must be 1-125: 0"),
    (b"\x10\x00\x0c\x00\x02\x03\x00\x01\x00\x02", "byte count 3 for 2 registers"),
])
def test_bad_requests_say_why(data, reason):
    with pytest.raises(ModbusError, match=reason.split(":")[-1].strip()):
        decode_request(data)


def test_a_read_response_whose_byte_count_does_not_fit_is_refused():
    with pytest.raises(ModbusError, match="byte count"):
        decode_response(b"\x04\x04\x00\x01")


def test_out_of_range_values_are_refused_when_built():
    with pytest.raises(ValueError, match="count must be 1-125"):
        ReadRequest(Function.READ_INPUT, 0, 126)
    with pytest.raises(ValueError, match="function must be a read"):
        ReadRequest(6, 0, 1)
    with pytest.raises(ValueError, match="0-65535"):
        WriteSingle(1, 70000)


def test_answers_matches_function_count_and_echo():
    read = ReadRequest(Function.READ_INPUT, 0, 2)
    assert answers(read, READ_INPUT_REPLY.pdu)
    assert not answers(read, ReadResponse(Function.READ_INPUT, (1,)))  # another count
    assert not answers(read, ReadResponse(Function.READ_HOLDING, (1, 2)))
    assert answers(read, ExceptionResponse(4, 2))
    assert not answers(read, ExceptionResponse(3, 2))
    write = WriteSingle(64, 100)
    assert answers(write, WriteSingle(64, 100))
    assert not answers(write, WriteSingle(64, 99))  # a late echo of an earlier write
    multi = WriteMultipleRequest(12, (1, 2, 3))
    assert answers(multi, WriteMultipleResponse(12, 3))
    assert not answers(multi, WriteMultipleResponse(12, 2))


def test_the_rtu_silence_is_three_and_a_half_characters():
    assert silence_seconds(19200) == pytest.approx(3.5 * 11 / 19200)  # about 2 ms
    assert silence_seconds(115200) == 0.00175


# -- stream decoders ----------------------------------------------------------------

REPLIES = [
    Message(1, ReadResponse(Function.READ_INPUT, tuple(range(1000, 1040)))),
    Message(1, WriteSingle(64, 55)),
    Message(1, WriteMultipleResponse(12, 3)),
    Message(1, ExceptionResponse(3, 2)),
]


def _messages(results):
    return [r for r in results if isinstance(r, Message)]


def _bad(results):
    return [r for r in results if isinstance(r, BadFrame)]


def _one_byte_at_a_time(decoder, data):
    results = []
    for index in range(len(data)):
        results += decoder.feed(data[index:index + 1])
    return results


@pytest.mark.parametrize("feed", ["all at once", "one byte at a time"])
def test_rtu_replies_come_out_whole(feed):
    data = b"".join(encode_rtu(m) for m in REPLIES)
    decoder = RtuDecoder()
    results = decoder.feed(data) if feed == "all at once" else _one_byte_at_a_time(decoder, data)
    assert results == REPLIES
    assert decoder.buffered == 0


@pytest.mark.parametrize("feed", ["all at once", "one byte at a time"])
def test_tcp_replies_come_out_whole_with_their_transactions(feed):
    messages = [Message(m.unit, m.pdu, transaction=n) for n, m in enumerate(REPLIES, 1)]
    data = b"".join(encode_tcp(m) for m in messages)
    decoder = TcpDecoder()
    results = decoder.feed(data) if feed == "all at once" else _one_byte_at_a_time(decoder, data)
    assert results == messages


@pytest.mark.parametrize("feed", ["all at once", "one byte at a time"])
def test_rtu_requests_come_out_whole_on_the_server_side(feed):
    requests = [
        Message(1, ReadRequest(Function.READ_HOLDING, 0, 40)),
        Message(2, WriteMultipleRequest(12, (1, 2, 3))),
        Message(1, WriteSingle(21, 0x8000)),
    ]
    data = b"".join(encode_rtu(m) for m in requests)
    decoder = RtuDecoder(requests=True)
    results = decoder.feed(data) if feed == "all at once" else _one_byte_at_a_time(decoder, data)
    assert results == requests


def test_a_bad_rtu_crc_costs_only_that_frame():
    first, second, third = (encode_rtu(m) for m in REPLIES[:3])
    corrupt = bytearray(second)
    corrupt[5] ^= 0x40
    decoder = RtuDecoder()
    results = decoder.feed(first + bytes(corrupt) + third)
    assert _messages(results) == [REPLIES[0], REPLIES[2]]
    assert [b.reason for b in _bad(results)] == ["bad CRC"]
    assert _bad(results)[0].data == bytes(corrupt)


@pytest.mark.parametrize("feed", ["all at once", "one byte at a time"])
def test_rtu_garbage_before_and_between_frames_is_skipped(feed):
    first, second = (encode_rtu(m) for m in REPLIES[:2])
    data = b"\xff\x00\xfe" + first + b"\x99\x98" + second
    decoder = RtuDecoder()
    results = decoder.feed(data) if feed == "all at once" else _one_byte_at_a_time(decoder, data)
    assert _messages(results) == REPLIES[:2]
    assert b"".join(b.data for b in _bad(results)) == b"\xff\x00\xfe\x99\x98"


def test_a_reply_for_another_unit_is_a_message_for_the_caller_to_drop():
    other = Message(2, WriteSingle(64, 55))
    decoder = RtuDecoder()
    assert decoder.feed(encode_rtu(other) + encode_rtu(REPLIES[1])) == [other, REPLIES[1]]


def test_an_rtu_frame_cut_short_loses_to_a_whole_frame_after_it():
    # A read reply whose byte count says 250 never completes; the write echo
    # after it must not wait for 250 bytes.
    cut = encode_rtu(REPLIES[0])[:3].replace(b"\x50", b"\xfa")
    decoder = RtuDecoder()
    results = decoder.feed(cut + encode_rtu(REPLIES[1]))
    assert _messages(results) == [REPLIES[1]]
    assert [b.reason for b in _bad(results)] == ["cut short by the next frame"]


def test_silence_drops_a_frame_cut_short():
    decoder = RtuDecoder()
    assert decoder.feed(encode_rtu(REPLIES[0])[:20]) == []
    dropped = decoder.silence()
    assert [b.reason for b in dropped] == ["cut short by silence"]
    assert decoder.buffered == 0
    assert decoder.feed(encode_rtu(REPLIES[1])) == [REPLIES[1]]
    assert decoder.silence() == []


def test_tcp_garbage_is_skipped_until_a_header_fits():
    message = Message(1, WriteSingle(64, 55), transaction=9)
    decoder = TcpDecoder()
    results = decoder.feed(b"\x00\x01\x02\x03\x04\x05\x06\x07" + encode_tcp(message))
    assert _messages(results) == [message]
    assert [b.reason for b in _bad(results)] == ["garbage"]


def test_a_tcp_frame_with_a_bad_pdu_costs_only_itself():
    bad = bytes.fromhex("0001" "0000" "0003" "01" "2b0e")  # function 43: not ours
    good = Message(1, WriteSingle(64, 55), transaction=2)
    decoder = TcpDecoder()
    results = decoder.feed(bad + encode_tcp(good))
    assert _messages(results) == [good]
    assert [b.reason for b in _bad(results)] == ["unknown function 43"]


values = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125)
replies = st.one_of(
    st.builds(ReadResponse, st.sampled_from([Function.READ_HOLDING, Function.READ_INPUT]),
              values),
    st.builds(WriteSingle, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(WriteMultipleResponse, st.integers(0, 0xFFFF), st.integers(1, 123)),
    st.builds(ExceptionResponse, st.sampled_from(list(Function)), st.integers(1, 11)),
)


@given(st.lists(replies, max_size=6), st.binary(max_size=40), st.integers(1, 50))
def test_rtu_decoder_never_raises_and_finds_every_frame_after_garbage(pdus, garbage, step):
    messages = [Message(1, pdu) for pdu in pdus]
    data = garbage + b"".join(encode_rtu(m) for m in messages)
    decoder = RtuDecoder()
    results = []
    for start in range(0, len(data), step):
        results += decoder.feed(data[start:start + step])
    found = _messages(results)
    # Garbage may by chance look like a frame of its own, never hide one of ours.
    assert found[len(found) - len(messages):] == messages
    assert decoder.buffered <= 256


@given(st.binary(max_size=600), st.integers(1, 64))
def test_decoders_never_raise_on_noise(noise, step):
    for decoder in (RtuDecoder(), RtuDecoder(requests=True), TcpDecoder()):
        for start in range(0, len(noise), step):
            decoder.feed(noise[start:start + step])
        assert decoder.buffered <= 260


@given(st.lists(replies, min_size=1, max_size=6), st.lists(st.integers(1, 64), min_size=1))
def test_replies_in_chunks_of_any_size_come_out_exactly(pdus, steps):
    messages = [Message(1 + index % 3, pdu) for index, pdu in enumerate(pdus)]
    data = b"".join(encode_rtu(m) for m in messages)
    decoder = RtuDecoder()
    results, start, index = [], 0, 0
    while start < len(data):
        step = steps[index % len(steps)]
        results += decoder.feed(data[start:start + step])
        start, index = start + step, index + 1
    assert results == messages
