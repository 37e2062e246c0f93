"""Decode speed: frames per second for framing + CRC check + named input decode.

Compares octolux's real path (FrameDecoder -> parse -> decode_inputs) with a
hand-written straight-line baseline (lookup-table CRC, struct.unpack_from, a
dict display of the same scaled values), measured in the same run, on the
117-byte 40-register frame and the 291-byte 127-register frame.

    .venv/bin/python bench/decode.py [--seconds 2]

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import pathlib
import struct
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from vectors import frame_bytes  # noqa: E402

from octolux.lxp import Direction, FrameDecoder, frames  # noqa: E402

# The tables of names are data, shared; the code that uses them is not.
from octolux.lxp.inputs import (  # noqa: E402
    FAULT_NAMES,
    STATUS_TEXTS,
    WARNING_NAMES,
    decode_inputs,
)

# -- the baseline: what one would write by hand for exactly these frames -------
# Deliberately its own code, CRC table included: it is what octolux is measured
# against, so it must not share octolux's implementation.


def _table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _table()


def baseline_crc(data):
    crc = 0xFFFF
    table = CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def s16(x):
    return x - 65536 if x & 0x8000 else x


def bit_names(bits, names):
    return [names[bit] for bit in range(32) if bits >> bit & 1]


def baseline_block_1(v):
    pf = v[19]
    status = v[0]
    return {
        "status": status,
        "status_text": STATUS_TEXTS.get(status, f"unknown ({status})"),
        "v_pv_1": v[1] / 10, "v_pv_2": v[2] / 10, "v_pv_3": v[3] / 10,
        "v_bat": v[4] / 10, "soc": v[5] & 255, "soh": v[5] >> 8, "internal_fault": v[6],
        "p_pv_1": v[7], "p_pv_2": v[8], "p_pv_3": v[9], "p_pv": v[7] + v[8] + v[9],
        "p_charge": v[10], "p_discharge": v[11], "p_battery": v[10] - v[11],
        "v_acr": v[12] / 10, "v_acs": v[13] / 10, "v_act": v[14] / 10, "f_ac": v[15] / 100,
        "p_inv": v[16], "p_rec": v[17],
        "pf": (1000 - pf if 1000 < pf < 2000 else pf) / 1000,
        "v_eps": v[20] / 10, "v_eps_s": v[21] / 10, "v_eps_t": v[22] / 10,
        "f_eps": v[23] / 100, "p_eps": v[24], "s_eps": v[25], "p_to_grid": v[26],
        "p_to_user": v[27], "p_grid": v[27] - v[26], "p_load": v[27] + v[16] - v[17] - v[26],
        "e_pv_1_day": v[28] / 10, "e_pv_2_day": v[29] / 10, "e_pv_3_day": v[30] / 10,
        "e_pv_day": (v[28] + v[29] + v[30]) / 10, "e_inv_day": v[31] / 10,
        "e_rec_day": v[32] / 10, "e_chg_day": v[33] / 10, "e_dischg_day": v[34] / 10,
        "e_eps_day": v[35] / 10, "e_to_grid_day": v[36] / 10, "e_to_user_day": v[37] / 10,
        "e_load_day": (v[37] + v[31] - v[32] - v[36]) / 10,
        "v_bus_1": v[38] / 10, "v_bus_2": v[39] / 10,
    }


def baseline_block_2(v):
    return {
        "e_pv_1_all": (v[40] | v[41] << 16) / 10, "e_pv_2_all": (v[42] | v[43] << 16) / 10,
        "e_pv_3_all": (v[44] | v[45] << 16) / 10,
        "e_pv_all": ((v[40] | v[41] << 16) + (v[42] | v[43] << 16) + (v[44] | v[45] << 16)) / 10,
        "e_inv_all": (v[46] | v[47] << 16) / 10, "e_rec_all": (v[48] | v[49] << 16) / 10,
        "e_chg_all": (v[50] | v[51] << 16) / 10, "e_dischg_all": (v[52] | v[53] << 16) / 10,
        "e_eps_all": (v[54] | v[55] << 16) / 10, "e_to_grid_all": (v[56] | v[57] << 16) / 10,
        "e_to_user_all": (v[58] | v[59] << 16) / 10, "fault_code": v[60] | v[61] << 16,
        "warning_code": v[62] | v[63] << 16,
        "fault_codes": bit_names(v[60] | v[61] << 16, FAULT_NAMES),
        "warning_codes": bit_names(v[62] | v[63] << 16, WARNING_NAMES),
        "t_inner": s16(v[64]), "t_rad_1": s16(v[65]),
        "t_rad_2": s16(v[66]), "t_bat": s16(v[67]), "runtime": v[69] | v[70] << 16,
    }


def baseline_block_3(v):
    serial = struct.pack("<5H", *v[115:120]).decode("latin-1").rstrip("\x00 ")
    return {
        "max_chg_curr": v[81] / 100, "max_dischg_curr": v[82] / 100,
        "charge_volt_ref": v[83] / 10, "dischg_cut_volt": v[84] / 10,
        "bat_status_0": v[85], "bat_status_1": v[86], "bat_status_2": v[87],
        "bat_status_3": v[88], "bat_status_4": v[89], "bat_status_5": v[90],
        "bat_status_6": v[91], "bat_status_7": v[92], "bat_status_8": v[93],
        "bat_status_9": v[94], "bat_status_inv": v[95], "bat_count": v[96],
        "bat_capacity": v[97], "bat_current": s16(v[98]) / 10, "bms_event_1": v[99],
        "bms_event_2": v[100], "max_cell_voltage": v[101] / 1000,
        "min_cell_voltage": v[102] / 1000, "max_cell_temp": s16(v[103]) / 10,
        "min_cell_temp": s16(v[104]) / 10, "bms_fw_update_state": v[105],
        "bat_cycle_count": v[106], "v_bat_inv": v[107] / 10, "inverter_serial": serial,
        "parallel_role": v[113] & 3, "parallel_phase": v[113] >> 2 & 3,
        "parallel_count": v[113] >> 8,
    }


def baseline_block_4_part(v):  # the registers 120-126 a 127-register frame carries
    return {
        "v_gen": v[121] / 10, "f_gen": v[122] / 100, "p_gen": v[123],
        "e_gen_day": v[124] / 10, "e_gen_all": (v[125] | v[126] << 16) / 10,
    }


def baseline_decode(data):
    """Check the frame and decode it: the straight-line way, for these two shapes only."""
    if data[:2] != b"\xa1\x1a" or struct.unpack_from("<H", data, 4)[0] + 6 != len(data):
        raise ValueError("bad frame")
    if baseline_crc(memoryview(data)[20:-2]) != struct.unpack_from("<H", data, len(data) - 2)[0]:
        raise ValueError("bad CRC")
    count = data[34] // 2
    v = struct.unpack_from(f"<{count}H", data, 35)
    if count == 40:
        return baseline_block_1(v)
    named = baseline_block_1(v)
    named.update(baseline_block_2(v))
    named.update(baseline_block_3(v))
    named.update(baseline_block_4_part(v))
    return named


def octolux_decode(decoder, data):
    """The real path: stream framing, frame parse with CRC check, named decode."""
    (frame,) = decoder.feed(data)
    return decode_inputs(frame.register, frame.values)


def calls_per_second(function, seconds):
    """How many calls of ``function()`` fit in a second, timed over ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            function()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def best_rates(first, second, seconds, rounds=5):
    """Best rate of each of two functions, measured in alternation.

    Alternating, and keeping the best round of each, makes the ratio robust to
    whatever else the machine is doing meanwhile.
    """
    best_first = best_second = 0.0
    for _ in range(rounds):
        best_first = max(best_first, calls_per_second(first, seconds / rounds / 2))
        best_second = max(best_second, calls_per_second(second, seconds / rounds / 2))
    return best_first, best_second


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="time per frame shape")
    arguments = parser.parse_args()

    cases = [
        ("40-register frame (117 B)", frame_bytes("read_input_reply_reg0")),
        ("127-register frame (291 B)", frame_bytes("read_input_all_reply_protocol5_127regs")),
    ]
    print(f"{'frame':28} {'octolux':>12} {'baseline':>12} {'ratio':>7}")
    for label, data in cases:
        decoder = FrameDecoder(Direction.FROM_DONGLE)
        # The comparison is only fair if both produce the same values.
        assert octolux_decode(decoder, data) == baseline_decode(data), label
        ours, base = best_rates(
            lambda d=data, dec=decoder: octolux_decode(dec, d),
            lambda d=data: baseline_decode(d),
            arguments.seconds,
        )
        print(f"{label:28} {ours:>10,.0f}/s {base:>10,.0f}/s {ours / base:>7.2f}")
    print("ratio = octolux / baseline (goal: at least 1.00: as fast as the hand-written code)")

    # Where the margin comes from: the same run with octolux's CRC swapped for
    # the baseline's byte-at-a-time one, leaving framing, parsing and decoding.
    print("\nwith the baseline's byte-table CRC in octolux too:")
    real_crc = frames.crc16_modbus
    frames.crc16_modbus = lambda data, start, stop: baseline_crc(memoryview(data)[start:stop])
    try:
        for label, data in cases:
            decoder = FrameDecoder(Direction.FROM_DONGLE)
            ours, base = best_rates(
                lambda d=data, dec=decoder: octolux_decode(dec, d),
                lambda d=data: baseline_decode(d),
                arguments.seconds,
            )
            print(f"{label:28} {ours:>10,.0f}/s {base:>10,.0f}/s {ours / base:>7.2f}")
    finally:
        frames.crc16_modbus = real_crc


if __name__ == "__main__":
    main()
