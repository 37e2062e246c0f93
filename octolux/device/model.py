"""Which model an inverter is, and so which of its inputs exist: for one ``Inverter``.

Holding registers 7-8 and 19 name the model (``octolux.lxp.models``); until
they are read, and for codes no model has, the inverter is taken to have only
the parts every model has. The model decides which input blocks are read on
connecting and on ``refresh``; whatever a frame carries is published, whoever
asked for it (a model's table of parts is knowledge from public sources, not
the inverter's word: what it sends wins).
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.logger import Logger

from octolux.lxp import models
from octolux.lxp.inputs import BLOCK_SIZE

_IDENTIFYING = frozenset({*models.FIRMWARE_CODE, models.DEVICE_TYPE})


class InverterModel:
    """One inverter's model, identified from its holding registers as they arrive."""

    log = Logger()

    def __init__(self, name: str):
        self.name = name
        self.model: models.Model | None = None  # None until registers 7, 8 and 19 are known
        self._unknown_logged: set[tuple[str | None, int | None]] = set()

    @property
    def current(self) -> models.Model:
        """The model, or ``COMMON`` while (or if) it is not known."""
        return self.model or models.COMMON

    def registers_received(self, changed: Mapping[int, int], registers: Mapping[int, int]) -> None:
        """Identify the model again if ``changed`` touched registers 7, 8 or 19."""
        if _IDENTIFYING.isdisjoint(changed) or not models.known(registers):
            return
        model = models.identify(registers)
        if model is self.model:
            return
        self.model = model
        if model is not models.COMMON:
            self.log.info("{name}: the inverter is a model {model}", name=self.name,
                          model=model.name)
            return
        codes = (models.firmware_code(registers), registers.get(models.DEVICE_TYPE))
        if codes not in self._unknown_logged:  # once per code: a flapping code is no flood
            self._unknown_logged.add(codes)
            self.log.info(
                "{name}: no model known has firmware code {code!r} and device type {type}:"
                " publishing only what every model has",
                name=self.name, code=codes[0], type=codes[1])

    def extra_input_registers(self) -> tuple[int, ...]:
        """Where the model's input blocks beyond 1-3 start (120, 160, 200), to read them."""
        return tuple((block - 1) * BLOCK_SIZE for block in models.input_blocks(self.current)
                     if block > 3)
