"""Battery modules: read their slots (input registers 5002-5121) when the inverter has some.

When an input frame says the inverter has battery modules (``bat_count``,
input 96), ``BatterySlots`` reads the four 30-register slots, one read at a
time. An exception reply means the model has no such registers: they are not
asked for again on that connection. Every slot frame that arrives, whoever
asked for it, is decoded (``octolux.lxp.batteries``) and each module's data
goes to the battery observers, keyed by the module's serial number: the
firmware rotates more than 4 modules through the 4 slots.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from octolux import lxp
from octolux.device.requests import CommandFailed
from octolux.lxp import batteries


class BatteryObserver(Protocol):
    """Told of battery modules' data. Called on the reactor thread."""

    def batteries_received(self, modules: dict[str, dict[str, Any]]) -> None:
        """Module serial -> its values (``octolux.lxp.batteries.FIELDS`` keys, decoded)."""


class BatterySlots:
    """One inverter's battery module slots: when to read them, and who hears of them."""

    log = Logger()

    def __init__(self, inverter):
        self._inverter = inverter  # an Inverter: read_input, connected, name
        self.observers: list[BatteryObserver] = []
        self._refused = False  # on this connection: a model without these registers
        self._reading = False

    def connected(self) -> None:
        """A new connection: ask again, whatever the last one answered."""
        self._refused = False

    def inputs_received(self, named: dict[str, Any]) -> None:
        """Input values arrived: read the slots if they say there are modules."""
        inverter = self._inverter
        if (named.get("bat_count", 0) > 0 and not self._refused and not self._reading
                and inverter.connected):
            self._reading = True
            reading = ensureDeferred(self._read())
            reading.addErrback(self._failed)
            reading.addBoth(self._done)

    async def _read(self) -> None:
        for slot in range(batteries.SLOTS):
            register = batteries.FIRST_REGISTER + slot * batteries.MODULE_REGISTERS
            try:
                await self._inverter.read_input(register, batteries.MODULE_REGISTERS)
            except CommandFailed as error:
                if error.reason.startswith("exception reply"):
                    self._refused = True
                    self.log.info("{name}: battery registers refused ({reason}): not asked "
                                  "again on this connection", name=self._inverter.name,
                                  reason=error.reason)
                return

    def _failed(self, failure) -> None:
        self.log.failure("{name}: reading the battery slots", failure,
                         name=self._inverter.name)

    def _done(self, _) -> None:
        self._reading = False

    def frame_received(self, frame: lxp.ReadReply) -> None:
        """Slot registers arrived: each module in them to the observers."""
        modules = batteries.decode_modules(frame.register, frame.values)
        if not modules:
            return
        for observer in self.observers:
            try:
                observer.batteries_received(modules)
            except Exception:
                self.log.failure("{name}: battery observer {observer!r} failed",
                                 name=self._inverter.name, observer=observer)
