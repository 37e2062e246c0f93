"""The captured frames of tests/data/frames.json (copied from the shared vectors).

Each was sent one way: the requests by a client to the dongle, the rest
(replies, broadcasts, heartbeats, parameter replies) by the dongle; the name
says which, and ``direction_of`` reads it.
"""

import json
import pathlib

from octolux import lxp

VECTORS_PATH = pathlib.Path(__file__).parent / "data" / "frames.json"
VECTORS = {vector["name"]: vector for vector in json.loads(VECTORS_PATH.read_text())}


def frame_bytes(name: str) -> bytes:
    """The bytes of one named captured frame."""
    return bytes.fromhex(VECTORS[name]["hex"])


def direction_of(name: str) -> lxp.Direction:
    """Who sent the named frame: a client its requests, the dongle everything else."""
    return lxp.Direction.TO_DONGLE if "request" in name else lxp.Direction.FROM_DONGLE


def parsed(name: str) -> lxp.Frame:
    """One named captured frame, parsed as sent by whoever sent it."""
    return lxp.parse(frame_bytes(name), direction_of(name))


# Real dongles' frames exactly as published (tests/data/dongles.json, copied
# from the shared vectors): {name, hex, source, claimed, structure_ok, crc_ok,
# notes}. Some are broken as published, on purpose.
DONGLES_PATH = pathlib.Path(__file__).parent / "data" / "dongles.json"
DONGLES = {vector["name"]: vector for vector in json.loads(DONGLES_PATH.read_text())}


def dongle_bytes(name: str) -> bytes:
    """The bytes of one named frame of a real dongle, as published."""
    return bytes.fromhex(DONGLES[name]["hex"])


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
DONGLE_KINDS = {name: kind for kind, names in _NAMED.items() for name in names}

# Structurally whole and CRC-less, but, as their source says, no frame of any
# kind: a heartbeat's bytes with the function byte swapped for C3 / C4
# ("synthetic negative test ... that must be BLOCKED"). They fit no param layout.
NOT_FRAMES = {"jsharkey_params_1", "jsharkey_params_2"}
# One TCP read that holds two frames, published as one: as a frame it is
# broken, as a stream it is both frames.
GLUED = "sna_coalesced_stream_line577_138B"
# ... and those two frames, published apart too.
GLUED_PARTS = ("sna_dongle_write_param_reply_reg6", "sna_hold_80_119_p5_after_c4")


def sent_by(kind) -> lxp.Direction:
    """Who sends a frame of this kind: a client (or the cloud) requests, the dongle the rest."""
    return lxp.Direction.TO_DONGLE if kind in lxp.frames.REQUESTS else lxp.Direction.FROM_DONGLE
