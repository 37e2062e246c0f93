"""An inverter's model, identified from its holding registers as they arrive."""

from __future__ import annotations

from twisted.logger import capturedLogs, formatEvent

from octolux.device.model import InverterModel
from octolux.lxp import models
from octolux.lxp.inputs import encode_text


def codes(firmware: str, device_type: int) -> dict[int, int]:
    return {**dict(zip(models.FIRMWARE_CODE, encode_text(firmware, 2), strict=True)),
            models.DEVICE_TYPE: device_type}


def test_the_model_is_known_once_registers_7_8_and_19_are():
    watch = InverterModel("house")
    registers = {7: codes("fAAB", 2092)[7]}
    watch.registers_received(registers, registers)
    assert watch.model is None and watch.current is models.COMMON
    assert watch.extra_input_registers() == ()
    registers = codes("fAAB", 2092)
    watch.registers_received({8: registers[8], 19: 2092}, registers)
    assert watch.model.slug == "eg4-18kpv"
    assert watch.extra_input_registers() == (120, 160, 200)


def test_an_unknown_code_is_logged_once_and_is_the_common_subset():
    watch = InverterModel("house")
    unknown, known = codes("ZZAA", 31), codes("BAAA", 4)
    with capturedLogs() as events:
        for registers in (unknown, known, unknown, unknown):
            watch.registers_received(registers, registers)
    lines = [formatEvent(event) for event in events]
    assert len([line for line in lines if "no model known" in line]) == 1
    assert "'ZZAA'" in lines[0] and "house" in lines[0]
    assert watch.model is models.COMMON
    assert watch.extra_input_registers() == ()


def test_registers_that_do_not_name_the_model_change_nothing():
    watch = InverterModel("house")
    registers = codes("BAAA", 4)
    watch.registers_received(registers, registers)
    with capturedLogs() as events:
        watch.registers_received({21: 0xF354}, {**registers, 21: 0xF354})
    assert events == [] and watch.model.slug == "lxp-3600-acs"
