"""Models from holding registers 7-8 and 19; per-battery data from 5002-5121."""

from __future__ import annotations

import pytest

from octolux.lxp import batteries, models
from octolux.lxp.inputs import encode_text


def codes(firmware: str, device_type: int | None = None) -> dict[int, int]:
    registers = dict(zip(models.FIRMWARE_CODE, encode_text(firmware, 2), strict=True))
    if device_type is not None:
        registers[models.DEVICE_TYPE] = device_type
    return registers


@pytest.mark.parametrize(("firmware", "device_type", "slug"), [
    ("BAAA", 4, "lxp-3600-acs"),  # the captured unit (tests/vectors)
    ("AAAA", 0, "lxp-3-6k-hybrid"),  # type 0 is the vendor's default: the letters decide
    ("FAAB", 44, "lxp-lb-eu"),  # a DG dongle's unit in dongles.json
    ("cBaa", 6, "sna"),  # an SNA in dongles.json: the letters in any case
    ("fAAB", 2092, "eg4-18kpv"),  # the type decides: the letters are LuxPower's FA
    ("CEAA", 54, "eg4-6000xp"),
    ("ZZZZ", 10284, "flexboss"),
    ("FAAA", 12, "lxp-eu-12k"),
])
def test_a_model_from_its_firmware_code_and_device_type(firmware, device_type, slug):
    assert models.identify(codes(firmware, device_type)).slug == slug


def test_an_unknown_code_is_the_common_subset():
    assert models.identify(codes("ZZAA", 31)) is models.COMMON
    assert models.model_name(codes("ZZAA", 31)) is None
    assert models.input_blocks(models.COMMON) == (1, 2, 3)
    assert not models.COMMON.has("generator") and models.COMMON.has(None)


def test_the_model_is_known_once_7_8_and_19_are():
    assert not models.known(codes("BAAA"))
    assert models.known(codes("BAAA", 4))


def test_a_model_has_the_blocks_of_its_parts():
    eg4 = models.MODELS_BY_SLUG["eg4-18kpv"]
    assert models.input_blocks(eg4) == (1, 2, 3, 4, 5, 6)
    assert eg4.has("split_phase") and not eg4.has("pv456")  # no PV strings 4-6
    assert models.input_blocks(models.MODELS_BY_SLUG["lxp-3600-acs"]) == (1, 2, 3)


def test_every_feature_of_a_model_is_a_known_feature():
    assert all(model.features <= models.FEATURES.keys() for model in models.MODELS)
    assert len(models.MODELS_BY_SLUG) == len(models.MODELS)


# -- per-battery data ---------------------------------------------------------------

# DoubleDoc/EG4-18KPV-BatteryDetails' sample, laid out as pylxpweb's map (from 5002).
SAMPLE = {"header": 0xC003, "capacity": 280, "voltage": 52.96, "current": -3.5, "soc": 86,
          "soh": 100, "cycle_count": 325, "max_cell_temp": 12.0, "min_cell_temp": 11.0,
          "max_cell_voltage": 3.313, "min_cell_voltage": 3.311, "max_cell_voltage_number": 3,
          "min_cell_voltage_number": 3, "firmware": "2.17", "serial": "Battery_ID_01"}


def test_a_module_decodes_from_its_30_registers():
    registers = batteries.encode_module(SAMPLE)
    assert len(registers) == 30
    assert registers[6] == 5296 and registers[7] == 0xFFDD and registers[8] == 100 << 8 | 86
    module = batteries.decode_module(registers)
    assert {key: module[key] for key in SAMPLE} == SAMPLE


def test_an_empty_slot_is_no_module():
    assert batteries.decode_module((0,) * 30) is None
    no_serial = batteries.encode_module({**SAMPLE, "serial": ""})
    assert batteries.decode_module(no_serial) is None


def test_modules_are_keyed_by_serial_whatever_their_slot():
    second = batteries.encode_module({**SAMPLE, "serial": "SECOND"})
    area = (0,) * 30 + second + batteries.encode_module(SAMPLE) + (0,) * 30
    modules = batteries.decode_modules(batteries.FIRST_REGISTER, area)
    assert set(modules) == {"SECOND", "Battery_ID_01"}
    assert batteries.decode_modules(batteries.FIRST_REGISTER + 30, second) == {
        "SECOND": modules["SECOND"]}
    assert batteries.decode_modules(batteries.FIRST_REGISTER + 1, second) == {}  # not a slot
