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
from vectors import DONGLES, dongle_bytes

from octolux import lxp
from octolux.lxp import BadFrame, FrameDecoder
from octolux.lxp.frames import REQUESTS, FrameError

# The kind each valid frame's source names. A request kind was sent to the
# dongle, every other kind by it.
_NAMED = {
    lxp.Heartbeat: [
        "jsharkey_ping_1", "jsharkey_12000xp_init_1", "jsharkey_12000xp_ping_1",
        "lxpbridge_heartbeat_p2", "lxpbridge_test_inverter_heartbeat_X",
        "lxpbridge_server_test_heartbeat_BA19520393", "lxpbridge_server_test_heartbeat_BA19260024",
        "lxpmodbus_heartbeat_193_payload05", "lxpbridge_issue178_heartbeat_p5_BA24702349",
        "lxpbridge_issue64_heartbeat_p5_BA11500484", "sna_heartbeat_p5_BA32500699",
    ],
    lxp.ReadRequest: [
        "jsharkey_modbus_read_input_1", "jsharkey_modbus_read_input_2",
        "jsharkey_modbus_read_input_3", "epilykos_read_input_request_0_40",
        "epilykos_ble_read_input_request_0_40", "lxpbridge_it_read_input_request_0_40",
        "lxpbridge_it_read_input_request_40_40", "lxpbridge_it_read_input_request_80_40",
        "lxpbridge_read_hold_request_reg12_count3",
        "lxpbridge_test_inverter_read_input_request_reg12_count1",
        "lxpbridge_server_test_read_hold_request_reg21",
        "lxppacket_read_hold_request_reg21_protocol2", "issue52_read_input_request_0_40_p1",
        "issue52_read_input_request_0_125_p1", "issue154_read_input_request_240_40",
        "issue154_read_input_request_280_40", "issue154_read_input_request_320_40",
        "sna_esp_read_hold_request_120_40_p2", "sna_esp_read_hold_request_200_40_p2",
        "sna_esp_read_input_request_120_40_p2", "sna_esp_read_input_request_160_40_p2",
    ],
    lxp.ReadReply: [
        "epilykos_read_input_reply_0_39", "epilykos_read_input_reply_40_79",
        "epilykos_read_input_reply_80_119", "epilykos_read_hold_reply_80_119",
        "epilykos_unsolicited_hold_reply_0_79", "epilykos_ble_read_input_reply_0_39_zero_datalog",
        "lxpbridge_it_read_input_reply_0_39", "lxpbridge_it_read_input_reply_40_79",
        "lxpbridge_it_read_input_reply_80_119", "lxpbridge_read_input_reply_0_126_protocol5",
        "lxpbridge_server_test_read_input_reply_0_39",
        "lxpbridge_server_test_read_input_reply_40_79",
        "lxpbridge_server_test_read_input_reply_80_119",
        "lxpbridge_server_test_read_hold_reply_reg12_time", "lxppacket_read_hold_reply_0_22_odd",
        "lxpmodbus_unsolicited_hold_reply_0_79", "issue52_hold_reply_reg7_2regs_41bytes",
        "issue154_read_input_reply_240_279_zeros_p2", "issue154_read_input_reply_280_319_zeros_p2",
        "luxpython_read_hold_reply_reg21_1reg", "luxpython_read_hold_reply_0_22",
        "luxpython_read_hold_reply_21_39", "luxpython_read_hold_reply_124_125",
        "luxpython_read_hold_reply_40_63", "luxpython_read_input_reply_0_39",
        "eg4_18kpv_hold_200_239_addr0", "sna_read_hold_reply_0_39_p2",
        "sna_read_hold_reply_40_79_p2", "sna_read_hold_reply_80_119_p2",
        "sna_read_hold_reply_120_159_p2", "sna_read_hold_reply_160_199_p2",
        "sna_read_hold_reply_200_239_p2", "sna_read_input_reply_0_39_p2",
        "sna_read_input_reply_40_79_p2", "sna_read_input_reply_80_119_p2",
        "sna_read_input_reply_120_159_p2", "sna_read_input_reply_0_39_p5",
        "sna_read_input_reply_120_159_p5", "sna_read_input_reply_160_199_p5",
        "sna_read_hold_reply_200_239_p5", "sna_read_hold_reply_160_199_p5",
        "sna_unsolicited_hold_push_0_79_p5", "sna_unsolicited_input_push_0_126_p5",
        "sna_unsolicited_input_push_254_380_p5", "sna_hold_80_119_p5_after_c4",
    ],
    lxp.WriteSingleRequest: [
        "lxpbridge_write_single_request_reg66_100",
        "lxppacket_write_single_request_reg21_protocol2",
    ],
    lxp.WriteSingleReply: [
        "lxpbridge_write_single_reply_reg66_100", "luxpython_write_single_reply_reg21_d101_live",
        "luxpython_write_single_reply_reg21_98d3",
    ],
    lxp.WriteMultiRequest: ["lxpbridge_write_multi_request_reg12_time"],
    lxp.WriteMultiReply: ["lxpbridge_write_multi_reply_reg12_count3"],
    lxp.ReadParamRequest: [
        "jsharkey_12000xp_version_1", "lxpbridge_read_param_request_reg7",
        "lxppacket_read_param_request_reg0", "lxppacket_read_param_request_reg1_noreply",
    ],
    lxp.ReadParamReply: [
        "jsharkey_12000xp_version_2", "lxpbridge_read_param_reply_reg0",
        "lxppacket_read_param_reply_reg0_180",
    ],
    lxp.WriteParamRequest: ["sna_cloud_write_param_reg6_server_addr"],
    lxp.WriteParamReply: ["lxpbridge_write_param_reply_reg7", "sna_dongle_write_param_reply_reg6"],
}
KIND = {name: kind for kind, names in _NAMED.items() for name in names}

# Structurally whole and CRC-less, but, as their source says, no frame of any
# kind: a heartbeat's bytes with the function byte swapped for C3 / C4
# ("synthetic negative test ... that must be BLOCKED"). They fit no param layout.
NOT_FRAMES = {"jsharkey_params_1", "jsharkey_params_2"}
# One TCP read that holds two frames, published as one: as a frame it is
# broken, as a stream it is both frames.
GLUED = "sna_coalesced_stream_line577_138B"
BAD = sorted(set(DONGLES) - set(KIND))


def sent_by(kind) -> lxp.Direction:
    """Who sends a frame of this kind: a client (or the cloud) requests, the dongle the rest."""
    return lxp.Direction.TO_DONGLE if kind in REQUESTS else lxp.Direction.FROM_DONGLE


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
        lxp.parse(dongle_bytes("sna_dongle_write_param_reply_reg6"), lxp.Direction.FROM_DONGLE),
        lxp.parse(dongle_bytes("sna_hold_80_119_p5_after_c4"), lxp.Direction.FROM_DONGLE),
    ]


@pytest.mark.parametrize("name", [
    "eg4_18kpv_hold_200_239_addr0", "issue52_hold_reply_reg7_2regs_41bytes",
])
def test_replies_with_address_byte_0_are_replies(name):
    # EG4 18kPV and DG dongles answer with the address byte clients send.
    frame = lxp.parse(dongle_bytes(name), lxp.Direction.FROM_DONGLE)
    assert (type(frame), frame.address) == (lxp.ReadReply, 0)


def test_every_frame_kind_a_dongle_exchanges_is_among_the_captures():
    assert set(_NAMED) >= {
        lxp.Heartbeat, lxp.ReadRequest, lxp.ReadReply, lxp.WriteSingleRequest,
        lxp.WriteSingleReply, lxp.WriteMultiRequest, lxp.WriteMultiReply, lxp.ReadParamRequest,
        lxp.ReadParamReply, lxp.WriteParamRequest, lxp.WriteParamReply,
    }
