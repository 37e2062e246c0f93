"""Whose frames these are: the dongle's and the inverter's serials, configured or learned.

``Serials`` knows the datalog (dongle) serial and the inverter serial an
``Inverter`` talks to. Either may be unknown at the start: the datalog serial
is then learned from the first frame, the inverter serial from the first reply
or input frame (asking for input registers 80-119 if none comes soon, see
``Serials.connected``). Once known, a frame from another dongle is ignored and
a reply naming another inverter is reported, each serial once.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from octolux import lxp
from octolux.lxp.inputs import decode_inputs

# Serials seen and refused (another dongle, another inverter, a dongle no
# listener section takes) are remembered so that each is logged once; the cap
# keeps a stream of corrupt heartbeats (they carry no CRC, so any bytes make a
# "serial") from growing the set without bound. 64 is more dongles than one
# network holds, so a real one is always reported.
MAX_REMEMBERED_SERIALS = 64

# Stands in for a serial not learned yet. Queued requests never go out with it
# (they are readdressed when sent, and wait until then); only the serial
# question does: LuxPower Advanced (guybw/LuxPython_DEV, the most used local
# integration) addresses every request to it when no inverter serial is
# configured, so dongles are known to pass it on. Nothing says which serial
# the reply carries, so this one is never learned from a frame.
NOT_YET_KNOWN = "0000000000"
# Seconds after connecting without the inverter serial before asking for it:
# broadcasts, which carry it too, may be minutes apart.
SERIAL_QUESTION_DELAY = 5.0
# The serial question reads input registers 80-119 (inputs/3): its reply
# names the inverter in its header and, in registers 115-119, in its values.
SERIAL_QUESTION_BLOCK = 80


def serial_told_by(frame: lxp.Frame) -> str | None:
    """The inverter serial ``frame`` tells: its header's, else input registers 115-119's.

    None if it tells none: a header carrying the serial question's stand-in
    (an inverter might echo the request's serial) is no serial. Only called
    while the serial is unknown, so decoding the values again costs nothing.
    """
    if frame.inverter != NOT_YET_KNOWN:
        return frame.inverter
    if type(frame) is lxp.ReadReply and frame.function == lxp.DeviceFunction.READ_INPUT:
        serial = decode_inputs(frame.register, frame.values).get("inverter_serial")
        if isinstance(serial, str) and len(serial) == len(NOT_YET_KNOWN) \
                and serial != NOT_YET_KNOWN:
            return serial
    return None


class OnceEach:
    """Remembers up to ``MAX_REMEMBERED_SERIALS`` serials, so that each is reported once."""

    def __init__(self):
        self._seen: set[str] = set()

    def first_sight(self, serial: str) -> bool:
        """Remember ``serial``; True the first time (and while there is room to remember)."""
        if serial in self._seen or len(self._seen) >= MAX_REMEMBERED_SERIALS:
            return False
        self._seen.add(serial)
        return True


class Serials:
    """The datalog and inverter serials of one ``Inverter``: checked, learned, policed.

    ``learned`` is called with ``"datalog"`` or ``"serial"`` when one is learned.
    """

    log = Logger()

    def __init__(
        self,
        datalog: str | None,  # 10-character datalogger serial; None: learn it
        serial: str | None,  # 10-character inverter serial; None: learn it
        *,
        clock: IReactorTime,
        learned: Callable[[str], None],
        name: str = "inverter",
    ):
        # Checked here: a bad serial would otherwise fail every request later.
        self.datalog = None if datalog is None else lxp.check_serial(datalog, "datalog")
        self.serial = None if serial is None else lxp.check_serial(serial, "serial")
        self.name = name
        self._clock = clock
        self._learned = learned
        self._send: Callable[[lxp.Frame], None] | None = None
        self._question: IDelayedCall | None = None
        self._foreign_datalogs = OnceEach()
        self._foreign_inverters = OnceEach()

    @property
    def known(self) -> bool:
        """Are both serials known, so that requests can be addressed?"""
        return self.datalog is not None and self.serial is not None

    # -- frames in --------------------------------------------------------------------

    def admit(self, frame: lxp.Frame) -> bool:
        """Is ``frame`` from our dongle? The first frame teaches an unknown datalog serial.

        A frame from another dongle is ignored (False), its serial reported once.
        """
        if frame.datalog == self.datalog:
            return True
        if self.datalog is not None:
            if self._foreign_datalogs.first_sight(frame.datalog):
                self.log.warn(
                    "{name}: ignoring frames from datalog {seen!r}, expected {datalog!r}:"
                    " check the datalog serial in config.ini",
                    name=self.name, seen=frame.datalog, datalog=self.datalog)
            return False
        self._learn("datalog", frame.datalog)
        return True

    def check_inverter(self, frame: lxp.Frame) -> None:
        """A reply or input frame names an inverter: learn it, or report a foreign one once."""
        if self.serial is None:
            serial = serial_told_by(frame)
            if serial is not None:
                self._learn("serial", serial)
        elif frame.inverter not in (self.serial, NOT_YET_KNOWN) \
                and self._foreign_inverters.first_sight(frame.inverter):
            self.log.warn(
                "{name}: the inverter reports serial {seen!r}, configured {serial!r}:"
                " requests go unanswered unless the inverter serial in config.ini is right",
                name=self.name, seen=frame.inverter, serial=self.serial)

    # -- requests out -----------------------------------------------------------------

    @property
    def addressee(self) -> tuple[str, str]:
        """The (datalog, inverter) serials to build a request with: stand-ins until learned."""
        return self.datalog or NOT_YET_KNOWN, self.serial or NOT_YET_KNOWN

    def address(self, request: lxp.Frame) -> lxp.Frame:
        """``request`` with the serials learned since it was built, if it was built before."""
        if not hasattr(request, "inverter"):  # a dongle parameter: the datalog only
            if request.datalog == self.datalog:
                return request
            return attrs.evolve(request, datalog=self.datalog)
        if request.datalog == self.datalog and request.inverter == self.serial:
            return request
        return attrs.evolve(request, datalog=self.datalog, inverter=self.serial)

    # -- the serial question ----------------------------------------------------------

    def connected(self, send: Callable[[lxp.Frame], None]) -> None:
        """A connection is up (``send`` writes to it): ask for the serial soon if unknown."""
        self._send = send
        if self.serial is None:
            self._cancel_question()
            self._question = self._clock.callLater(SERIAL_QUESTION_DELAY, self._ask)

    def disconnected(self) -> None:
        """The connection is gone: no question on it."""
        self._send = None
        self._cancel_question()

    def _ask(self) -> None:
        """Ask for input block 3: its reply carries the inverter serial."""
        self._question = None
        if self.serial is not None or self._send is None:
            return
        if self.datalog is None:
            # Not a frame yet, so not even the datalog serial to address it with.
            self._question = self._clock.callLater(SERIAL_QUESTION_DELAY, self._ask)
            return
        self.log.info(
            "{name}: asking for input registers 80-119, which carry the inverter serial,"
            " addressed to inverter {stand_in} (as LuxPower Advanced does without a serial);"
            " if the dongle does not answer, the serial comes with its next input broadcast,"
            " within its broadcast interval (2-5 minutes on most units)",
            name=self.name, stand_in=NOT_YET_KNOWN)
        self._send(lxp.ReadRequest(lxp.DeviceFunction.READ_INPUT, self.datalog, NOT_YET_KNOWN,
                                   SERIAL_QUESTION_BLOCK, 40))

    def _cancel_question(self) -> None:
        if self._question is not None and self._question.active():
            self._question.cancel()
        self._question = None

    def _learn(self, key: str, value: str) -> None:
        """Use ``value`` as the datalog or inverter serial from now on; say so, once."""
        setattr(self, key, value)
        what = "datalog (dongle)" if key == "datalog" else "inverter"
        self.log.info(
            "{name}: learned the {what} serial {value!r}: put `{key} = {value}` in this"
            " inverter's [lxp] section of config.ini",
            name=self.name, what=what, key=key, value=value)
        if key == "serial":
            self._cancel_question()
        self._learned(key)
