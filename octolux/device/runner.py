"""The one way in for commands: ``CommandRunner.run(name, payload)``, one runner per inverter.

MQTT's ``cmd/<name>`` messages, the page's POSTs and anything added later (a
scheduler, another transport) run a command here. The payload is parsed
(``octolux.device.commands``: a bad one never reaches the inverter), the
request goes to the inverter, and the outcome, a ``CommandResult`` (OK or
FAIL, and why), is logged once, kept among the recent ones (the page shows
them) and handed to every result listener, whoever sent the command: the MQTT
bridge publishes it on ``result/<name>``, the page tells its browsers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux.device.commands import COMMANDS, PayloadError, describe_payload
from octolux.device.requests import CommandFailed

OK = "OK"
FAIL = "FAIL"
RECENT_RESULTS = 20  # results kept for the page


@attrs.frozen
class CommandResult:
    """One command's outcome, as published on ``result/<name>`` and logged."""

    at: float  # seconds since the epoch
    command: str  # the <name> of cmd/<name>
    payload: str  # as shown in the log
    result: str  # OK or FAIL
    reason: str = ""  # why it failed


ResultListener = Callable[[CommandResult], None]


class CommandRunner:
    """Runs commands against one inverter; every result goes to ``listeners``.

    ``any_register`` is ``[lxp] set_hold_any_register``: ``set_hold`` may
    write registers not known to be writable. Reactor thread only.
    """

    log = Logger()

    def __init__(self, inverter, *, any_register: bool = False,
                 now: Callable[[], float] = time.time):
        self.inverter = inverter
        self.any_register = any_register
        self.now = now
        # The last results, newest last (a list: an empty deque costs 0.7 KB an
        # inverter, 7 MB for 10,000), and who hears of each one.
        self.recent: list[CommandResult] = []
        self.listeners: list[ResultListener] = []
        # Commands of the layers above (the automation's plan_pause): name -> what to do.
        self.own_commands: dict[str, Callable[[], None]] = {}

    def run(self, name: str, payload: bytes, *, source: str | None = None
            ) -> Deferred[CommandResult]:
        """Run ``cmd/<name>`` with ``payload``; fires with its result, never fails.

        ``name`` may carry the command's argument (``set_hold/21``). ``source``
        starts the command's log line (the MQTT topic it came on); by default
        the inverter's name and ``cmd/<name>``.
        """
        source = source or f"{self.inverter.name}: cmd/{name}"
        shown = describe_payload(payload)
        own = self.own_commands.get(name)
        if own is not None:
            own()
            return succeed(self._result(source, name, shown, OK))
        head, _, argument = name.partition("/")
        command = COMMANDS.get(head)
        if command is None or (command.argument is None) != (argument == ""):
            return succeed(self._result(source, name, shown, FAIL, "unknown command"))
        try:
            if command.argument is None:
                value = command.parse(payload)
            else:
                value = command.parse(payload, argument, any_register=self.any_register)
        except PayloadError as error:
            return succeed(self._result(source, name, shown, FAIL, str(error)))
        self.log.debug("{source} {payload}: running", source=source, payload=shown)
        running = command.run(self.inverter, value)
        running.addCallbacks(
            lambda _: self._result(source, name, shown, OK),
            lambda failure: self._failed(source, name, shown, failure),
        )
        return running

    def _failed(self, source: str, name: str, shown: str, failure: Failure) -> CommandResult:
        if failure.check(CommandFailed):
            return self._result(source, name, shown, FAIL, failure.value.reason)
        self.log.failure("{source} {payload}: unexpected error", failure, source=source,
                         payload=shown)
        return self._result(source, name, shown, FAIL, "unexpected error")

    def _result(self, source: str, name: str, shown: str, result: str,
                why: str = "") -> CommandResult:
        """Hand the result to the listeners, keep it, log the one line for this command."""
        outcome = CommandResult(self.now(), name, shown, result, why)
        self.recent.append(outcome)
        if len(self.recent) > RECENT_RESULTS:
            del self.recent[0]
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                # One listener's bug must not keep the result from the others.
                self.log.failure("{source}: result listener {listener!r} failed",
                                 source=source, listener=listener)
        if result == OK:
            self.log.info("{source} {payload} -> OK", source=source, payload=shown)
        else:
            self.log.warn("{source} {payload} -> FAIL ({why})", source=source, payload=shown,
                          why=why)
        return outcome
