"""What the web page shows, kept up to date: each inverter's live state, and the commands it sends.

``LiveInverter`` observes one ``Inverter`` (like the bridge and the history)
and its command results, and tells its listeners (the page's event stream)
whenever something the page shows has changed. ``Page`` holds them all and
answers ``/api/state``. Commands from the page go to the inverter's
``CommandRunner``, the one way in that ``cmd/<name>`` messages take too (so
their results are published on ``result/<name>`` as well).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed

from octolux.device.runner import CommandRunner
from octolux.device.settings import SETTINGS, decode_settings


class LiveInverter:
    """One inverter as the page shows it (an ``InverterObserver``; reactor thread only)."""

    def __init__(self, inverter, *, runner: CommandRunner | None = None, api_path: str, clock):
        self.inverter = inverter
        self.runner = runner  # the command path; None: no commands
        self.api_path = api_path  # /api or /api/<name>
        self._clock = clock
        self.last_frame: float | None = None  # when input data or registers last arrived
        self.listeners: list[Callable[[LiveInverter], None]] = []
        if runner is not None:
            runner.listeners.append(lambda result: self._changed())

    @property
    def name(self) -> str:
        """The inverter's name, as its log lines and named topics have it."""
        return self.inverter.name

    def inputs_received(self, blocks) -> None:
        """New values: remember when."""
        self.last_frame = self._clock.seconds()
        self._changed()

    def registers_received(self, registers) -> None:
        """New register values (settings may have changed): remember when."""
        self.last_frame = self._clock.seconds()
        self._changed()

    def connection_changed(self, connected: bool) -> None:
        """The datalogger link came up or went down."""
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener(self)

    def state(self) -> dict[str, Any]:
        """Everything the page shows of this inverter, as JSON-ready values."""
        inputs = self.inverter.latest_inputs
        results = [] if self.runner is None else [
            attrs.asdict(result) for result in reversed(self.runner.recent)
        ]
        return {
            "name": self.name,
            "api": self.api_path,
            "connected": bool(self.inverter.connected),
            "last_frame": self.last_frame,
            "inputs": inputs,
            "settings": decode_settings(self.inverter.registers),
            "results": results,
        }

    def run_command(self, command: str, payload: bytes) -> Deferred[str | None]:
        """Run ``cmd/<command>`` with ``payload``; fires with OK or FAIL (None: no commands)."""
        if self.runner is None:
            return succeed(None)
        running = self.runner.run(command, payload,
                                  source=f"{self.name}: cmd/{command} from the page")
        return running.addCallback(lambda outcome: outcome.result)


def settings_table() -> dict[str, dict[str, Any]]:
    """Each setting's kind, unit, range, description and whether a command may change it."""
    return {
        name: {
            "kind": setting.kind,
            "unit": setting.unit,
            "minimum": setting.minimum,
            "maximum": setting.maximum,
            "description": setting.description,
            "writable": setting.writable,
        }
        for name, setting in SETTINGS.items()
    }


class Page:
    """Every inverter's live state, whether the page may send commands, and the history's health.

    ``listeners`` hear of every change of any inverter (and of an inverter
    added while running: a dongle that dialled in unannounced).
    """

    def __init__(self, *, control: bool = False, local_only: bool = False, history=None, clock):
        self.inverters: list[LiveInverter] = []
        self.control = control
        # Listening on loopback only: a command must come to a loopback name
        # (a web site whose name points at 127.0.0.1 is not the bridge).
        self.local_only = local_only
        self.history = history  # HistoryService, or None
        self.clock = clock
        self.listeners: list[Callable[[LiveInverter], None]] = []

    def add(self, live: LiveInverter) -> None:
        """Show ``live`` too."""
        self.inverters.append(live)
        live.listeners.append(self._changed)
        self._changed(live)

    def _changed(self, live: LiveInverter) -> None:
        for listener in self.listeners:
            listener(live)

    def inverter(self, name: str | None) -> LiveInverter | None:
        """The named inverter; the first when ``name`` is None."""
        if name is None:
            return self.inverters[0] if self.inverters else None
        return next((live for live in self.inverters if live.name == name), None)

    def history_state(self) -> dict[str, Any]:
        """Whether there is a history, and how each of its stores' writers is doing."""
        if self.history is None:
            return {"enabled": False, "stores": []}
        return {
            "enabled": True,
            "stores": [
                {"store": writer.store.description, **attrs.asdict(writer.stats)}
                for writer in self.history.writers
            ],
        }

    def state(self) -> dict[str, Any]:
        """``GET /api/state``: the whole page's data."""
        return {
            "now": self.clock.seconds(),
            "control": self.control,
            "history": self.history_state(),
            "settings_table": settings_table(),
            "inverters": [live.state() for live in self.inverters],
        }
