"""Real dongles' frames (tests/data/dongles.json): what the sources say they are, we parse.

Every frame whose structure and CRC are valid (or that carries no CRC) parses,
in the direction it was sent, into the frame kind its source names; every
other one is a bad frame, costing nothing else. The kinds below are read from
each vector's ``claimed`` (the source's word); the vectors' own
``structure_ok`` and ``crc_ok`` flags say which frames are valid, and
``test_the_valid_frames_are_exactly_those_the_vectors_mark_valid`` holds the
two readings to each other.
"""

import re

import pytest
from vectors import DONGLE_KINDS, DONGLES, GLUED, GLUED_PARTS, NOT_FRAMES, dongle_bytes, sent_by

from octolux import lxp
from octolux.lxp import BadFrame, FrameDecoder
from octolux.lxp.frames import FrameError

KIND = DONGLE_KINDS
BAD = sorted(set(DONGLES) - set(KIND))

def _noted(name: str, field: str) -> int | None:
    """A number the vector's structural notes give (``proto=5``, ``reg=200``, ``addr=0``)."""
    found = re.search(rf"\b{field}=(\d+)", DONGLES[name]["notes"].split("decoded:")[-1])
    return int(found.group(1)) if found else None


def test_every_vector_is_either_named_here_or_bad():
    assert set(KIND) <= set(DONGLES)
    assert len(DONGLES) == 129
    assert len(KIND) == 94 and len(BAD) == 35


def test_the_valid_frames_are_exactly_those_the_vectors_mark_valid():
    valid = {name for name, vector in DONGLES.items()
             if vector["structure_ok"] and vector["crc_ok"] is not False}
    assert valid - NOT_FRAMES == set(KIND)


@pytest.mark.parametrize("name", sorted(KIND))
def test_a_valid_frame_parses_into_the_kind_its_source_names(name):
    kind = KIND[name]
    data = dongle_bytes(name)
    frame = lxp.parse(data, sent_by(kind))
    assert type(frame) is kind
    assert lxp.build(frame) == data  # nothing lost, address byte and all
    assert frame.protocol == _noted(name, "proto")
    if hasattr(frame, "address"):
        assert frame.address == _noted(name, "addr")
    if hasattr(frame, "register"):
        assert frame.register == _noted(name, "reg")


@pytest.mark.parametrize("name", sorted(KIND))
def test_a_valid_frame_comes_out_of_a_stream_as_it_parses(name):
    direction = sent_by(KIND[name])
    data = dongle_bytes(name)
    decoder = FrameDecoder(direction)
    assert decoder.feed(data + data) == [lxp.parse(data, direction)] * 2


@pytest.mark.parametrize("name", BAD)
def test_a_broken_frame_is_a_bad_frame_whoever_sent_it(name):
    for direction in lxp.Direction:
        with pytest.raises(FrameError):
            lxp.parse(dongle_bytes(name), direction)


# What follows a broken frame in the stream tests, each way.
_GOOD_AFTER = {
    lxp.Direction.FROM_DONGLE: ["sna_read_input_reply_0_39_p5", "sna_heartbeat_p5_BA32500699"],
    lxp.Direction.TO_DONGLE: ["sna_esp_read_hold_request_120_40_p2",
                              "sna_cloud_write_param_reg6_server_addr"],
}


@pytest.mark.parametrize("direction", list(lxp.Direction), ids=str)
@pytest.mark.parametrize("name", sorted(set(BAD) - {GLUED}))
def test_a_broken_frame_costs_only_itself_in_a_stream(name, direction):
    good = [dongle_bytes(after) for after in _GOOD_AFTER[direction]]
    decoder = FrameDecoder(direction)
    results = decoder.feed(dongle_bytes(name) + b"".join(good))
    # The link goes on (idle bytes here), so that nothing waits for more.
    results += decoder.feed(bytes(decoder.max_frame_length))
    assert [item for item in results if not isinstance(item, BadFrame)] == [
        lxp.parse(data, direction) for data in good
    ]
    assert isinstance(results[0], BadFrame)


def test_two_frames_glued_in_one_read_are_both_kept():
    results = FrameDecoder(lxp.Direction.FROM_DONGLE).feed(dongle_bytes(GLUED))
    assert results == [
        lxp.parse(dongle_bytes(name), lxp.Direction.FROM_DONGLE) for name in GLUED_PARTS
    ]
    assert dongle_bytes(GLUED) == b"".join(map(dongle_bytes, GLUED_PARTS))


@pytest.mark.parametrize("name", [
    "eg4_18kpv_hold_200_239_addr0", "issue52_hold_reply_reg7_2regs_41bytes",
])
def test_replies_with_address_byte_0_are_replies(name):
    # EG4 18kPV and DG dongles answer with the address byte clients send.
    frame = lxp.parse(dongle_bytes(name), lxp.Direction.FROM_DONGLE)
    assert (type(frame), frame.address) == (lxp.ReadReply, 0)


def test_every_frame_kind_a_dongle_exchanges_is_among_the_captures():
    assert set(KIND.values()) >= {
        lxp.Heartbeat, lxp.ReadRequest, lxp.ReadReply, lxp.WriteSingleRequest,
        lxp.WriteSingleReply, lxp.WriteMultiRequest, lxp.WriteMultiReply, lxp.ReadParamRequest,
        lxp.ReadParamReply, lxp.WriteParamRequest, lxp.WriteParamReply,
    }
