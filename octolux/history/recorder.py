"""The recorder: what one inverter reports, turned into samples.

An observer of one ``Inverter`` (like the MQTT bridge): every numeric input
value of every frame, every holding register whose value changed (key
``hold/<register>``) and every change of the datalogger link (key
``connected``, 1 or 0); as a battery observer, every numeric value of each
battery module (key ``battery/<serial>/<key>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from octolux.history.query import Sample

CONNECTED = "connected"  # the key of the link state: 1 connected, 0 not


class SampleSink(Protocol):
    """Where a recorder sends samples (``HistoryService`` in production)."""

    def add(self, samples: Sequence[Sample]) -> None:
        """Take ``samples``; never blocks."""


class Recorder:
    """Turns what one inverter reports into samples (an ``InverterObserver``).

    Register values are recorded when they change: the first value seen after
    start-up counts as a change.
    """

    def __init__(self, inverter_name: str, sink: SampleSink, clock):
        self.inverter_name = inverter_name
        self._sink = sink
        self._clock = clock
        self._registers: dict[int, int] = {}

    def inputs_received(self, blocks: Mapping[int, Mapping[str, Any]]) -> None:
        """Every numeric value of every block (text values such as the serial are left out)."""
        at = self._clock.seconds()
        name = self.inverter_name
        samples = [
            Sample(name, at, key, float(value))
            for values in blocks.values()
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if samples:
            self._sink.add(samples)

    def registers_received(self, registers: Mapping[int, int]) -> None:
        """The registers whose value differs from the last one recorded."""
        at = self._clock.seconds()
        changed = []
        for register, value in sorted(registers.items()):
            if self._registers.get(register) != value:
                self._registers[register] = value
                changed.append(Sample(self.inverter_name, at, f"hold/{register}", float(value)))
        if changed:
            self._sink.add(changed)

    def batteries_received(self, modules: Mapping[str, Mapping[str, Any]]) -> None:
        """Every numeric value of each module, as ``battery/<serial>/<key>``."""
        at = self._clock.seconds()
        samples = [
            Sample(self.inverter_name, at, f"battery/{serial}/{key}", float(value))
            for serial, values in sorted(modules.items())
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if samples:
            self._sink.add(samples)

    def connection_changed(self, connected: bool) -> None:
        """The link state, as key ``connected``."""
        at = self._clock.seconds()
        self._sink.add([Sample(self.inverter_name, at, CONNECTED, 1.0 if connected else 0.0)])
