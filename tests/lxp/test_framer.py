"""The stream framer: whole frames out of a TCP byte stream, whatever it carries."""

from hypothesis import given, settings
from hypothesis import strategies as st
from vectors import VECTORS, frame_bytes

from octolux import lxp
from octolux.lxp import BadFrame, FrameDecoder

ALL_FRAMES = [bytes.fromhex(v["hex"]) for v in VECTORS.values()]


def frames_of(results):
    return [item for item in results if not isinstance(item, BadFrame)]


def bad_of(results):
    return [item for item in results if isinstance(item, BadFrame)]


def feed_bytewise(decoder, data):
    results = []
    for index in range(len(data)):
        results.extend(decoder.feed(data[index : index + 1]))
    return results


def test_several_frames_in_one_chunk_all_come_out_in_order():
    stream = b"".join(ALL_FRAMES)
    frames = frames_of(FrameDecoder().feed(stream))
    assert frames == [lxp.parse(data) for data in ALL_FRAMES]


def test_a_partial_frame_waits_for_the_rest():
    data = frame_bytes("read_input_reply_reg0")
    decoder = FrameDecoder()
    assert decoder.feed(data[:50]) == []
    assert decoder.buffered == 50
    assert decoder.feed(data[50:]) == [lxp.parse(data)]
    assert decoder.buffered == 0


def test_one_byte_at_a_time_gives_the_same_frames():
    stream = b"".join(ALL_FRAMES)
    assert frames_of(feed_bytewise(FrameDecoder(), stream)) == frames_of(
        FrameDecoder().feed(stream)
    )


def test_garbage_before_a_frame_is_skipped_and_reported():
    data = frame_bytes("heartbeat")
    decoder = FrameDecoder()
    results = decoder.feed(b"\x00\xff junk" + data)
    assert results == [BadFrame("garbage", b"\x00\xff junk"), lxp.parse(data)]
    assert decoder.rejected["garbage"] == 1


def test_bad_crc_costs_only_that_frame():
    good = frame_bytes("read_input_reply_reg40")
    corrupt = bytearray(frame_bytes("read_input_reply_reg0"))
    corrupt[40] ^= 0x55
    decoder = FrameDecoder()
    results = decoder.feed(good + bytes(corrupt) + good)
    assert frames_of(results) == [lxp.parse(good), lxp.parse(good)]
    assert [bad.reason for bad in bad_of(results)] == ["bad CRC"]
    assert decoder.rejected == {"bad CRC": 1}


def test_impossible_length_costs_only_the_junk_up_to_the_next_prefix():
    good = frame_bytes("heartbeat")
    bogus = b"\xa1\x1a\x02\x00\xff\xff" + b"\x00" * 10  # claims a 65 KB frame
    decoder = FrameDecoder()
    results = decoder.feed(bogus + good)
    assert frames_of(results) == [lxp.parse(good)]
    assert decoder.rejected["impossible length"] == 1


def test_a_frame_hidden_inside_a_truncated_one_is_recovered():
    # A frame cut short by a dropped segment: its length field swallows the
    # start of the next frame, which must still come out.
    cut = frame_bytes("read_input_reply_reg0")[:60]
    good = frame_bytes("write_single_ack_reg66_100")
    filler = frame_bytes("read_input_reply_reg40")
    results = FrameDecoder().feed(cut + good + filler + filler)
    assert lxp.parse(good) in frames_of(results)


def test_the_buffer_is_bounded():
    decoder = FrameDecoder(max_frame_length=1024)
    decoder.feed(b"\xa1\x1a\x02\x00\xf0\x03")  # claims a 1014-byte frame, waits for it
    for _ in range(100):
        decoder.feed(b"\x00" * 100)
        assert decoder.buffered <= 1024 + 100


def test_a_split_prefix_is_not_lost():
    data = frame_bytes("heartbeat")
    decoder = FrameDecoder()
    assert decoder.feed(b"junk\xa1") == [BadFrame("garbage", b"junk")]
    assert decoder.feed(data[1:]) == [lxp.parse(data)]


# -- property tests ------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    decoder = FrameDecoder()
    decoder.feed(data)
    feed_bytewise(FrameDecoder(), data)


@settings(max_examples=200)
@given(st.sampled_from(ALL_FRAMES), st.data())
def test_mutated_frames_never_raise(frame, data):
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 5))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    FrameDecoder().feed(bytes(mutated) + frame)


garbage = st.binary(max_size=40).filter(lambda b: b"\xa1" not in b)


@settings(max_examples=200)
@given(st.lists(st.tuples(garbage, st.sampled_from(ALL_FRAMES)), min_size=1, max_size=8))
def test_valid_frames_interleaved_with_garbage_are_all_recovered(pieces):
    stream = b"".join(junk + frame for junk, frame in pieces)
    expected = [lxp.parse(frame) for _, frame in pieces]
    assert frames_of(FrameDecoder().feed(stream)) == expected
    assert frames_of(feed_bytewise(FrameDecoder(), stream)) == expected


@settings(max_examples=100)
@given(st.lists(st.sampled_from(ALL_FRAMES), min_size=1, max_size=6), st.data())
def test_any_chunking_gives_the_same_frames(frames, data):
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    results = []
    previous = 0
    for cut in cuts + [len(stream)]:
        results.extend(decoder.feed(stream[previous:cut]))
        previous = cut
    assert frames_of(results) == [lxp.parse(frame) for frame in frames]
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
    results = FrameDecoder().feed(frame + frame_bytes("heartbeat"))
    assert results[-1] == lxp.parse(frame_bytes("heartbeat"))
    for item in results[:-1]:
        if not isinstance(item, BadFrame):
            assert lxp.build(item) == frame  # whatever parses must round-trip


def test_a_read_reply_with_no_values_is_a_bad_frame():
    frame = _checksummed_translated_frame(1, 4, b"\x00", 2)
    (result,) = FrameDecoder().feed(frame)
    assert isinstance(result, BadFrame)
    assert "1 to 127 values" in result.reason


def test_a_false_prefix_in_garbage_does_not_delay_the_next_frame():
    # "A1 1A" in garbage, with a plausible length (1014 bytes): trusting it
    # would hold back the write echo after it until 1000 more bytes arrive.
    good = frame_bytes("write_single_ack_reg66_100")
    for garbage in (b"\xa1\x1a\x02\x00\xf0\x03\x00\x00", b"\xa1\x1a\x02\x00\xf0\x03\x01\xc2"):
        decoder = FrameDecoder()
        results = decoder.feed(garbage + b"\x00" * 12 + good)
        assert frames_of(results) == [lxp.parse(good)], garbage
        assert decoder.buffered == 0
        assert frames_of(feed_bytewise(FrameDecoder(), garbage + b"\x00" * 12 + good)) == [
            lxp.parse(good)
        ]
