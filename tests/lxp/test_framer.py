"""The stream framer: whole frames out of a TCP byte stream, whatever it carries."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectors import VECTORS, direction_of, frame_bytes

from octolux import lxp
from octolux.lxp import BadFrame

FROM_DONGLE = lxp.Direction.FROM_DONGLE
TO_DONGLE = lxp.Direction.TO_DONGLE
# The captured frames each way: what a client hears, and what a dongle hears.
SENT = {
    direction: [frame_bytes(name) for name in VECTORS
                if direction_of(name) is direction or name == "heartbeat"]
    for direction in lxp.Direction
}
# Most of these tests read the dongle's side, as the bridge does.
ALL_FRAMES = SENT[FROM_DONGLE]


def decoder_for(direction=FROM_DONGLE, **options) -> lxp.FrameDecoder:
    """A decoder of what ``direction`` carries: by default what a client hears."""
    return lxp.FrameDecoder(direction, **options)


def parse(data: bytes, direction=FROM_DONGLE):
    """One frame as a decoder of ``direction`` should give it."""
    return lxp.parse(data, direction)


def frames_of(results):
    return [item for item in results if not isinstance(item, BadFrame)]


def bad_of(results):
    return [item for item in results if isinstance(item, BadFrame)]


def feed_bytewise(decoder, data):
    results = []
    for index in range(len(data)):
        results.extend(decoder.feed(data[index : index + 1]))
    return results


@pytest.mark.parametrize("direction", list(lxp.Direction), ids=str)
def test_several_frames_in_one_chunk_all_come_out_in_order(direction):
    stream = b"".join(SENT[direction])
    results = decoder_for(direction).feed(stream)
    assert results == [parse(data, direction) for data in SENT[direction]]


def test_a_partial_frame_waits_for_the_rest():
    data = frame_bytes("read_input_reply_reg0")
    decoder = decoder_for()
    assert decoder.feed(data[:50]) == []
    assert decoder.buffered == 50
    assert decoder.feed(data[50:]) == [parse(data)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("direction", list(lxp.Direction), ids=str)
def test_one_byte_at_a_time_gives_the_same_frames(direction):
    stream = b"".join(SENT[direction])
    assert feed_bytewise(decoder_for(direction), stream) == decoder_for(direction).feed(stream)


def test_the_direction_decides_what_a_stream_carries():
    # A protocol 1 read request and a one-value protocol 1 read reply are the
    # same bytes; frames that fit only the other direction are bad frames.
    stream = frame_bytes("read_hold_request_reg12_count3") + frame_bytes("write_multi_ack")
    to_dongle = decoder_for(TO_DONGLE).feed(stream)
    from_dongle = decoder_for(FROM_DONGLE).feed(stream)
    assert [type(item) for item in to_dongle] == [lxp.ReadRequest, BadFrame]
    assert [type(item) for item in from_dongle] == [lxp.ReadReply, lxp.WriteMultiReply]
    assert from_dongle[0].values == (3,)


def test_garbage_before_a_frame_is_skipped_and_reported():
    data = frame_bytes("heartbeat")
    decoder = decoder_for()
    results = decoder.feed(b"\x00\xff junk" + data)
    assert results == [BadFrame("garbage", b"\x00\xff junk"), parse(data)]
    assert decoder.rejected["garbage"] == 1


def test_bad_crc_costs_only_that_frame():
    good = frame_bytes("read_input_reply_reg40")
    corrupt = bytearray(frame_bytes("read_input_reply_reg0"))
    corrupt[40] ^= 0x55
    decoder = decoder_for()
    results = decoder.feed(good + bytes(corrupt) + good)
    assert frames_of(results) == [parse(good), parse(good)]
    assert [bad.reason for bad in bad_of(results)] == ["bad CRC"]
    assert decoder.rejected == {"bad CRC": 1}


def test_impossible_length_costs_only_the_junk_up_to_the_next_prefix():
    good = frame_bytes("heartbeat")
    bogus = b"\xa1\x1a\x02\x00\xff\xff" + b"\x00" * 10  # claims a 65 KB frame
    decoder = decoder_for()
    results = decoder.feed(bogus + good)
    assert frames_of(results) == [parse(good)]
    assert decoder.rejected["impossible length"] == 1


def test_a_frame_hidden_inside_a_truncated_one_is_recovered():
    # A frame cut short by a dropped segment: its length field swallows the
    # start of the next frame, which must still come out.
    cut = frame_bytes("read_input_reply_reg0")[:60]
    good = frame_bytes("write_single_ack_reg66_100")
    filler = frame_bytes("read_input_reply_reg40")
    results = decoder_for().feed(cut + good + filler + filler)
    assert parse(good) in frames_of(results)


def test_the_buffer_is_bounded():
    decoder = decoder_for(max_frame_length=1024)
    decoder.feed(b"\xa1\x1a\x02\x00\xf0\x03")  # claims a 1014-byte frame, waits for it
    for _ in range(100):
        decoder.feed(b"\x00" * 100)
        assert decoder.buffered <= 1024 + 100


def test_a_split_prefix_is_not_lost():
    data = frame_bytes("heartbeat")
    decoder = decoder_for()
    assert decoder.feed(b"junk\xa1") == [BadFrame("garbage", b"junk")]
    assert decoder.feed(data[1:]) == [parse(data)]


def _with_length_field(data: bytes, total: int) -> bytes:
    return data[:4] + (total - 6).to_bytes(2, "little") + data[6:]


def test_a_heartbeat_with_a_corrupt_length_costs_only_itself():
    # 200 instead of 13: trusted, it would swallow the burst after it.
    corrupt = _with_length_field(frame_bytes("heartbeat"), 206)
    burst = [frame_bytes(f"read_input_reply_reg{register}") for register in (0, 40, 80)]
    decoder = decoder_for()
    results = decoder.feed(corrupt + b"".join(burst))
    assert frames_of(results) == [parse(frame) for frame in burst]
    assert decoder.rejected == {"heartbeat not 19 bytes": 1}


def test_a_param_frame_whose_value_length_does_not_fit_costs_only_itself():
    reply = frame_bytes("read_param_reply_param0_300s")
    corrupt = _with_length_field(reply, 60)  # its value length still says 2
    good = frame_bytes("write_single_ack_reg66_100")
    decoder = decoder_for()
    results = decoder.feed(corrupt + good + reply)
    assert frames_of(results) == [parse(good), parse(reply)]
    assert decoder.rejected == {"param value length does not match the frame": 1}


@pytest.mark.parametrize("cut", [1, 2, 5, 10])
def test_a_checksummed_frame_inside_a_cut_heartbeat_wins(cut):
    # The heartbeat's length fits, but it lost its last bytes: its span runs
    # into the next frame, whose CRC proves that it is the real one.
    cut_heartbeat = frame_bytes("heartbeat")[:-cut]
    good = frame_bytes("write_single_ack_reg66_100")
    results = decoder_for().feed(cut_heartbeat + good)
    assert frames_of(results) == [parse(good)]
    assert [bad.reason for bad in bad_of(results)] == ["cut short by the next frame"]
    assert frames_of(feed_bytewise(decoder_for(), cut_heartbeat + good)) == [parse(good)]


def test_a_translated_frame_cut_short_does_not_hold_back_the_next_frame():
    # A DG dongle's capture: 117 bytes of a 197-byte frame, then a 41-byte
    # reply. Waiting for the 80 missing bytes would hold the reply back until
    # the dongle sends again (a minute, or a request's timeout).
    cut = frame_bytes("read_input_all_reply_protocol5_127regs")[:117]
    good = frame_bytes("write_single_ack_reg66_100")
    decoder = decoder_for()
    results = decoder.feed(cut + good)
    assert frames_of(results) == [parse(good)]
    assert [(bad.reason, len(bad.data)) for bad in bad_of(results)] == [
        ("cut short by the next frame", 117)]
    assert decoder.buffered == 0
    assert frames_of(feed_bytewise(decoder_for(), cut + good)) == [parse(good)]


def test_a_translated_frame_still_coming_waits_for_the_rest():
    data = frame_bytes("read_input_all_reply_protocol5_127regs")
    decoder = decoder_for()
    assert decoder.feed(data[:200]) == []
    assert decoder.feed(data[200:]) == [parse(data)]


def test_a_heartbeat_one_byte_short_does_not_take_the_next_heartbeat_with_it():
    heartbeat = frame_bytes("heartbeat")
    results = decoder_for().feed(heartbeat[:-1] + heartbeat)
    assert frames_of(results) == [parse(heartbeat)]


def test_frames_inside_an_unknown_frame_with_a_corrupt_length_are_recovered():
    # Nothing bounds an unknown function's length but the maximum; the valid
    # frames it would swallow come out, and without waiting for its end.
    odd = lxp.build(lxp.UnknownFrame(0xC7, "2222222222", b"\x01\x02"))
    swallowing = _with_length_field(odd, 1000)
    burst = [frame_bytes("read_input_reply_reg0"), frame_bytes("heartbeat")]
    decoder = decoder_for()
    results = decoder.feed(swallowing + b"".join(burst))
    assert frames_of(results) == [parse(frame) for frame in burst]
    assert decoder.buffered == 0


def test_a_crc_less_frame_waits_only_for_a_trailing_a1():
    # Its last byte might start the next frame's prefix; any other last byte
    # lets it out at once.
    ends_in_a1 = lxp.build(lxp.WriteParamRequest("2222222222", 7, b"\x00\xa1"))
    decoder = decoder_for()
    assert decoder.feed(ends_in_a1) == []
    assert decoder.feed(b"\x00") == [parse(ends_in_a1), BadFrame("garbage", b"\x00")]
    heartbeat = frame_bytes("heartbeat")
    assert decoder_for().feed(heartbeat) == [parse(heartbeat)]


# -- property tests ------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    decoder = decoder_for()
    decoder.feed(data)
    feed_bytewise(decoder_for(), data)


@settings(max_examples=200)
@given(st.sampled_from(ALL_FRAMES), st.data())
def test_mutated_frames_never_raise(frame, data):
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 5))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    decoder_for().feed(bytes(mutated) + frame)


garbage = st.binary(max_size=40).filter(lambda b: b"\xa1" not in b)


@settings(max_examples=200)
@given(st.lists(st.tuples(garbage, st.sampled_from(ALL_FRAMES)), min_size=1, max_size=8))
def test_valid_frames_interleaved_with_garbage_are_all_recovered(pieces):
    stream = b"".join(junk + frame for junk, frame in pieces)
    expected = [parse(frame) for _, frame in pieces]
    assert frames_of(decoder_for().feed(stream)) == expected
    assert frames_of(feed_bytewise(decoder_for(), stream)) == expected


@settings(max_examples=100)
@given(st.lists(st.sampled_from(ALL_FRAMES), min_size=1, max_size=6), st.data())
def test_any_chunking_gives_the_same_frames(frames, data):
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = decoder_for()
    results = []
    previous = 0
    for cut in cuts + [len(stream)]:
        results.extend(decoder.feed(stream[previous:cut]))
        previous = cut
    assert frames_of(results) == [parse(frame) for frame in frames]
    assert bad_of(results) == []


def _checksummed_translated_frame(address, function, section, protocol):
    """A translated-data frame with arbitrary content but a valid CRC and lengths.

    Built by hand on purpose: lxp.build only makes valid frames, and this is
    what a confused dongle could send.
    """
    from octolux.lxp.crc import crc16_modbus

    data = bytes([address, function]) + b"5555555555" + b"\x00\x00" + section
    data += crc16_modbus(data).to_bytes(2, "little")
    payload = len(data).to_bytes(2, "little") + data
    header = b"\xa1\x1a" + protocol.to_bytes(2, "little")
    header += (len(payload) + 12).to_bytes(2, "little") + b"\x01\xc2" + b"2222222222"
    return header + payload


@settings(max_examples=500)
@given(st.integers(0, 3), st.integers(0, 255), st.binary(max_size=300), st.sampled_from([1, 2, 5]))
def test_checksummed_nonsense_is_a_bad_frame_never_an_exception(address, function, section,
                                                                 protocol):
    frame = _checksummed_translated_frame(address, function, section, protocol)
    results = decoder_for().feed(frame + frame_bytes("heartbeat"))
    assert results[-1] == parse(frame_bytes("heartbeat"))
    for item in results[:-1]:
        if not isinstance(item, BadFrame):
            assert lxp.build(item) == frame  # whatever parses must round-trip


def test_a_read_reply_with_no_values_is_a_bad_frame():
    frame = _checksummed_translated_frame(1, 4, b"\x00", 2)
    (result,) = decoder_for().feed(frame)
    assert isinstance(result, BadFrame)
    assert "1 to 127 values" in result.reason


def test_a_false_prefix_in_garbage_does_not_delay_the_next_frame():
    # "A1 1A" in garbage, with a plausible length (1014 bytes): trusting it
    # would hold back the write echo after it until 1000 more bytes arrive.
    good = frame_bytes("write_single_ack_reg66_100")
    for garbage in (b"\xa1\x1a\x02\x00\xf0\x03\x00\x00", b"\xa1\x1a\x02\x00\xf0\x03\x01\xc2"):
        decoder = decoder_for()
        results = decoder.feed(garbage + b"\x00" * 12 + good)
        assert frames_of(results) == [parse(good)], garbage
        assert decoder.buffered == 0
        assert frames_of(feed_bytewise(decoder_for(), garbage + b"\x00" * 12 + good)) == [
            parse(good)
        ]


# -- valid frames among damaged ones ---------------------------------------------
# What a faulty link does to a stream: frames cut short, length fields
# corrupted, bytes flipped, garbage (some of it shaped like a frame header).
# Every valid frame carries its own datalog serial, which lies outside the
# CRC, so that each one can be found in the output, and none can be confused
# with a damaged frame that happens to parse.

DAMAGED_DATALOG = b"XXXXXXXXXX"
_LENGTH_FIELDS = (4, 18, 20)  # frame length; data length (194) or param value length


def stamped(frame: bytes, datalog: bytes) -> bytes:
    """``frame`` with another datalog serial: still valid, the serial is outside the CRC."""
    return frame[:8] + datalog + frame[18:]


def damaged(rng) -> bytes:
    """One piece of damage: a captured frame mangled one to three ways, or garbage."""
    kind = rng.choice(["frame", "frame", "frame", "garbage", "fake header"])
    if kind == "garbage":
        junk = bytearray(rng.randbytes(rng.randint(1, 60)))
        for _ in range(rng.randint(0, 2)):  # dense garbage has A1 1A in it too
            position = rng.randrange(len(junk))
            junk[position : position + 2] = lxp.frames.PREFIX
        return bytes(junk)
    if kind == "fake header":
        return (
            lxp.frames.PREFIX
            + rng.choice([1, 2, 5]).to_bytes(2, "little")
            + rng.randint(0, 1100).to_bytes(2, "little")
            + bytes([1, rng.randint(0xC0, 0xCF)])
            + rng.randbytes(rng.randint(0, 40))
        )
    frame = bytearray(stamped(rng.choice(ALL_FRAMES), DAMAGED_DATALOG))
    for _ in range(rng.randint(1, 3)):
        operation = rng.choice(["length", "truncate", "flip"])
        if operation == "truncate" and len(frame) > 1:
            del frame[rng.randint(1, len(frame) - 1) :]
        elif operation == "length":
            offset = rng.choice(_LENGTH_FIELDS)
            if offset + 2 <= len(frame):
                old = int.from_bytes(frame[offset : offset + 2], "little")
                new = rng.choice([rng.randint(0, 0xFFFF), (old + rng.randint(-8, 8)) % 0x10000])
                frame[offset : offset + 2] = new.to_bytes(2, "little")
        else:
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
    return bytes(frame)


def damaged_stream(rng, count: int) -> tuple[bytes, list]:
    """``count`` valid frames, each after a piece of damage; the stream and the frames."""
    pieces = []
    valid = []
    for index in range(count):
        frame = stamped(rng.choice(ALL_FRAMES), b"V%09d" % index)
        pieces += [damaged(rng), frame]
        valid.append(parse(frame))
    return b"".join(pieces), valid


def recovered(valid, results) -> int:
    """How many of the ``valid`` frames came out of the framer."""
    decoded = set(frames_of(results))
    return sum(frame in decoded for frame in valid)


@settings(max_examples=300)
@given(st.randoms(use_true_random=False), st.integers(1, 12), st.data())
def test_damaged_streams_never_raise_and_chunking_does_not_matter(rng, count, data):
    stream, valid = damaged_stream(rng, count)
    whole = frames_of(decoder_for().feed(stream))
    assert frames_of(feed_bytewise(decoder_for(), stream)) == whole
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = decoder_for()
    chunked = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        chunked.extend(decoder.feed(stream[start:end]))
    assert frames_of(chunked) == whole


RECOVERY_SAMPLE = 2000  # valid frames per example


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=True))
def test_at_least_99_percent_of_valid_frames_survive_damaged_neighbours(rng):
    # A CRC-less frame (heartbeat, param, unknown function) cannot prove its
    # own length: unchecked, a corrupt one swallows the frames after it.
    stream, valid = damaged_stream(rng, RECOVERY_SAMPLE)
    decoder = decoder_for()
    # The link goes on (idle bytes here), so that nothing still waits for its end.
    results = decoder.feed(stream) + decoder.feed(bytes(decoder.max_frame_length))
    ratio = recovered(valid, results) / len(valid)
    assert ratio >= 0.99
