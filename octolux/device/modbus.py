"""The inverter's own RS485 port, reached with Modbus instead of through a dongle.

Three transports carry the same Modbus requests: a Modbus TCP gateway (MBAP
framing), a gateway in transparent mode ("RTU over TCP") and a local serial
port (RTU). The ``Inverter`` above is the one the dongle path uses, unchanged:
it sends LXP request frames and hears LXP reply frames, and
``ModbusProtocol`` translates, register numbers being the same on both wires
(only the byte order differs, which ``octolux.modbus`` and ``octolux.lxp``
each handle). A ``ModbusLine`` dials the line (``SerialEndpoint`` makes a
serial port an endpoint, so one that disappears is reopened with backoff like
a lost TCP connection) and hands each inverter on it, one unit each, its
connection; the inverter learns its serial from input registers 115-119 as
it does without broadcasts. ``ModbusPoller`` asks for the input registers,
since nothing is broadcast on RS485.
"""

from __future__ import annotations

import attrs
from twisted.application import service
from twisted.internet import error, protocol
from twisted.internet.defer import fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from octolux import lxp, modbus
from octolux.device.inverter import CommandFailed, Dialer, Inverter
from octolux.device.requests import SEND_MARGIN
from octolux.device.serials import NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK
from octolux.lxp.inputs import BLOCK_SIZE
from octolux.net.badframes import BadFrameLog
from octolux.net.endpoints import describe_peer, failure_phrase
from octolux.net.logging import debug_enabled

# The input blocks polled, 40 registers a read as the dongle and the peers
# (poldim/EG4-Inverter-Modbus) read them; the last one is skipped for the rest
# of a connection if the inverter refuses it (models without registers 120+).
INPUT_BLOCKS = (0, 40, 80, 120)
# A poll that fails for these reasons was cut short by the service stopping.
QUIET_REASONS = ("stopping", "not running")


def datalog_stand_in(unit: int) -> str:
    """The datalog serial the ``Inverter`` is given: there is no dongle, but it wants one.

    Ten letters and digits, like a dongle's: ``MODBUS0001`` for unit 1.
    """
    return f"MODBUS{unit:04d}"


def _modbus_request(frame: lxp.Frame) -> modbus.pdu.Request:
    """The Modbus request that asks what LXP ``frame`` asks; ValueError if Modbus has none."""
    kind = type(frame)
    if kind is lxp.ReadRequest:
        return modbus.ReadRequest(int(frame.function), frame.register, frame.count)
    if kind is lxp.WriteSingleRequest:
        return modbus.WriteSingle(frame.register, frame.value)
    if kind is lxp.WriteMultiRequest:
        return modbus.WriteMultipleRequest(frame.register, frame.values)
    raise ValueError(f"no Modbus request for {kind.__name__}")


def _lxp_reply(request: lxp.Frame, response) -> lxp.Frame:
    """The LXP reply a dongle would have relayed for ``response`` to ``request``."""
    datalog, inverter, register = request.datalog, request.inverter, request.register
    kind = type(response)
    if kind is modbus.ReadResponse:
        return lxp.ReadReply(int(response.function), datalog, inverter, register,
                             response.values)
    if kind is modbus.WriteSingle:
        return lxp.WriteSingleReply(datalog, inverter, response.address, response.value)
    if kind is modbus.WriteMultipleResponse:
        return lxp.WriteMultiReply(datalog, inverter, response.address, response.count)
    return lxp.ExceptionReply(response.function, datalog, inverter, register, response.code)


class ModbusProtocol(protocol.Protocol):
    """One Modbus line (TCP or RTU): LXP requests out as Modbus, replies in as LXP frames.

    Several inverters may share the line, one unit each (``UnitLink`` is what
    each one's ``Inverter`` holds as its connection). One request is on the
    line at a time: the others wait their turn, in order, one per unit (a
    unit's newer request replaces its older one, which its ``Inverter`` has
    given up on). A turn ends with the reply, or after ``turn_timeout``
    seconds without one. A reply answers the request on the line only if it
    comes from its unit and fits it (``octolux.modbus.answers``; and its
    transaction number on Modbus TCP); anything else, a garbled frame, a late
    reply or one from another unit, costs only itself. Reports to the
    ``ModbusLine`` (``connection_made``, ``reply_received``, ``connection_lost``).
    """

    log = Logger()

    def __init__(self, line, clock: IReactorTime, *, rtu: bool, silence: float = 0.0,
                 turn_timeout: float = SEND_MARGIN, name: str = "modbus",
                 peer: str | None = None):
        self.line = line
        self.name = name
        self.rtu = rtu
        self.peer = peer or "?"
        self._fixed_peer = peer is not None
        self._clock = clock
        self._silence = silence  # seconds of quiet the bus needs before a request
        self._turn_timeout = turn_timeout
        self._decoder = modbus.RtuDecoder() if rtu else modbus.TcpDecoder()
        self._transaction = 0
        # The request on the line: its unit, LXP frame and Modbus message.
        self._on_the_line: tuple[int, lxp.Frame, modbus.Message] | None = None
        self._turn_ends: IDelayedCall | None = None
        self._waiting: dict[int, lxp.Frame] = {}  # unit -> its next request, in order
        self._last_byte = float("-inf")
        self._delayed_send: IDelayedCall | None = None
        self._abort_reason: str | None = None
        self._foreign_units: set[int] = set()
        self._bad_frames = BadFrameLog(self.log, clock, name, self.peer)
        self.adapter_echoes = False  # does the RS485 adapter pass back what it sends?
        self._echo: bytes | None = None  # the echo that may come, RTU only
        self._echo_held = b""  # bytes that may be its start

    def connectionMade(self) -> None:
        """Tell the line; requests may be sent from now on."""
        if not self._fixed_peer:
            self.peer = self._bad_frames.peer = describe_peer(self.transport.getPeer())
        # A gateway that died finds no other way to say so: we poll, but
        # only ever hear from the inverter behind it.
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(True)
        self.line.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed the decoder; a reply to the request on the line goes to the line as LXP."""
        self._last_byte = self._clock.seconds()
        if debug_enabled():
            self.log.debug("{name}: received {data.hex()}", name=self.name, data=data)
        if self._echo is not None:
            data = self._without_echo(data)
        for item in self._decoder.feed(data):
            if type(item) is lxp.BadFrame:
                self._bad_frames.report(item)
                continue
            self._message_received(item)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Stop the timers; tell the line why the connection ended."""
        self._bad_frames.close()
        for call in (self._delayed_send, self._turn_ends):
            if call is not None and call.active():
                call.cancel()
        self._delayed_send = self._turn_ends = None
        self._on_the_line = None
        self._waiting.clear()
        self.line.connection_lost(self, self._abort_reason or failure_phrase(reason))

    def send(self, unit: int, frame: lxp.Frame) -> None:
        """Ask ``unit`` what LXP request ``frame`` asks, when the line is free."""
        try:
            _modbus_request(frame)
        except ValueError as problem:
            # A heartbeat echo or a dongle parameter: nothing on RS485 answers those.
            self.log.info("{name}: not sent: {problem}", name=self.name, problem=problem)
            return
        on_the_line = self._on_the_line
        if on_the_line is not None and on_the_line[0] == unit:
            # Its inverter has given up on the one on the line: this one replaces it.
            self._end_turn()
        self._waiting.pop(unit, None)
        self._waiting[unit] = frame
        if self._on_the_line is None:
            self._next()
        elif self._turn_ends is None and self._delayed_send is None:
            # The one on the line has had its turn, and was kept listening
            # for only as long as nobody else waited.
            self._end_turn()
            self._next()

    def abort(self, reason: str) -> None:
        """Drop the connection now; ``reason`` is what the line will be told."""
        self._abort_reason = reason
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self.transport.loseConnection)()

    def _next(self) -> None:
        """Put the longest-waiting request on the line."""
        if not self._waiting:
            return
        unit = next(iter(self._waiting))
        frame = self._waiting.pop(unit)
        transaction = None
        if not self.rtu:
            self._transaction = (self._transaction + 1) & 0xFFFF
            transaction = self._transaction
        message = modbus.Message(unit, _modbus_request(frame), transaction)
        self._on_the_line = (unit, frame, message)
        self._turn_ends = self._clock.callLater(self._turn_timeout, self._turn_over)
        # RTU: the bus must be quiet for 3.5 characters before a new frame, or
        # the inverter reads it as the tail of the last one.
        wait = self._last_byte + self._silence - self._clock.seconds()
        if self.rtu and wait > 0:
            self._delayed_send = self._clock.callLater(wait, self._write, message)
        else:
            self._write(message)

    def _end_turn(self) -> None:
        for call in (self._delayed_send, self._turn_ends):
            if call is not None and call.active():
                call.cancel()
        self._delayed_send = self._turn_ends = None
        self._on_the_line = None

    def _turn_over(self) -> None:
        """No reply in time: the next request's turn (its inverter's deadline says the rest).

        With nobody waiting, the request stays on the line: a slow reply
        still answers it, as long as its inverter waits for it.
        """
        self._turn_ends = None
        if self._waiting:
            self._end_turn()
            self._next()

    def _write(self, message: modbus.Message) -> None:
        self._delayed_send = None
        if self.rtu:
            # Whatever waits in the buffer now came before our request: it is
            # no part of the reply, and must not be taken for its start.
            for dropped in self._decoder.silence():
                self._bad_frames.report(dropped)
            data = modbus.encode_rtu(message)
            # A read's echo is told from its reply by its content, a write's
            # is not (the reply repeats it): a write's is taken for an echo
            # only once a read has shown that this adapter echoes.
            is_read = type(message.pdu) is modbus.ReadRequest
            self._echo = data if is_read or self.adapter_echoes else None
            self._echo_held = b""
        else:
            data = modbus.encode_tcp(message)
        if debug_enabled():
            self.log.debug("{name}: sending {data.hex()}", name=self.name, data=data)
        self._last_byte = self._clock.seconds()
        self.transport.write(data)

    def _without_echo(self, data: bytes) -> bytes:
        """``data`` less the adapter's echo of our request, if it starts with one.

        Some RS485 adapters hear their own transmission and pass it back: a
        write's echo would otherwise pass for the inverter's confirmation.
        Bytes that may be the start of the echo are held until it is whole
        (dropped) or turns out to be something else (passed on).
        """
        held = self._echo_held + data
        echo = self._echo
        if len(held) < len(echo) and echo.startswith(held):
            self._echo_held = held
            return b""
        self._echo, self._echo_held = None, b""
        if not held.startswith(echo):
            return held
        if not self.adapter_echoes:
            self.adapter_echoes = True
            self.log.info("{name}: the adapter passes back what it sends: its echoes are"
                          " dropped", name=self.name)
        return held[len(echo):]

    def _message_received(self, message: modbus.Message) -> None:
        if message.unit not in self.line.units:
            if message.unit not in self._foreign_units and len(self._foreign_units) < 16:
                self._foreign_units.add(message.unit)
                self.log.info("{name}: ignoring replies from unit {other} (none of ours)",
                              name=self.name, other=message.unit)
            return
        on_the_line = self._on_the_line
        if on_the_line is None:
            self.log.debug("{name}: a reply nobody waits for: {message}", name=self.name,
                           message=message)
            return
        unit, frame, request = on_the_line
        if (message.unit != unit or message.transaction != request.transaction
                or not modbus.answers(request.pdu, message.pdu)):
            self.log.debug("{name}: a reply that does not answer {request}: {message}",
                           name=self.name, request=request, message=message)
            return
        self._end_turn()
        # The next unit's turn first: the request this reply lets its
        # inverter send joins the end of the queue, so every unit gets a turn.
        self._next()
        try:
            self.line.reply_received(unit, _lxp_reply(frame, message.pdu))
        except Exception:
            # A bug in handling one reply must not cost the connection.
            self.log.failure("{name}: error handling {message}", name=self.name,
                             message=message)


@attrs.frozen
class UnitLink:
    """One unit on a ``ModbusProtocol``'s line: what its ``Inverter`` holds as its connection."""

    protocol: ModbusProtocol
    unit: int

    @property
    def peer(self) -> str:
        """Where the unit is, for the log: ``serial:///dev/ttyUSB0 unit 1``."""
        return f"{self.protocol.peer} unit {self.unit}"

    def send(self, frame: lxp.Frame) -> None:
        """Send ``frame``'s request to this unit, in its turn."""
        self.protocol.send(self.unit, frame)

    def abort(self, reason: str) -> None:
        """Drop the whole line (every unit on it)."""
        self.protocol.abort(reason)


class ModbusFactory(protocol.Factory):
    """Builds a ``ModbusProtocol`` per connection, all reporting to one ``ModbusLine``."""

    noisy = False

    def __init__(self, line, clock: IReactorTime, **options):
        self._line = line
        self._clock = clock
        self._options = options

    def buildProtocol(self, addr) -> ModbusProtocol:
        """A protocol for one connection (or one opening of the serial port)."""
        # A serial port has no peer to ask for: its address is its name.
        peer = str(addr) if isinstance(addr, SerialAddress) else None
        built = ModbusProtocol(self._line, self._clock, peer=peer, **self._options)
        built.factory = self
        return built


@attrs.frozen
class SerialAddress:
    """The address of a serial port, for the log: ``serial:///dev/ttyUSB0``."""

    path: str

    def __str__(self) -> str:
        return f"serial://{self.path}"


@implementer(IStreamClientEndpoint)
class SerialEndpoint:
    """A serial port as a client endpoint, so that ``ClientService`` reopens it with backoff.

    Each ``connect`` opens the port (8N1 at ``baudrate``); a port that is
    gone (USB adapter unplugged) fails the attempt, and a port that goes away
    while open ends the connection, exactly as TCP does.
    """

    def __init__(self, reactor, path: str, baudrate: int):
        self._reactor = reactor
        self.path = path
        self.baudrate = baudrate

    def connect(self, factory):
        """Open the port; fires with the protocol, or fails with ConnectError."""
        # Imported here: pyserial is needed only by those who use a serial port.
        from serial import SerialException
        from twisted.internet.serialport import SerialPort

        built = factory.buildProtocol(SerialAddress(self.path))
        try:
            SerialPort(built, self.path, self._reactor, baudrate=self.baudrate)
        except (SerialException, OSError) as problem:
            return fail(error.ConnectError(string=f"cannot open {self.path}: {problem}"))
        return succeed(built)

    def __repr__(self) -> str:
        return f"SerialEndpoint({self.path!r}, {self.baudrate})"


class ModbusPoller(service.Service):
    """Asks the inverter for its input registers every ``poll_interval`` seconds while connected.

    Nothing is broadcast on RS485, so what a dongle sends of its own accord
    the bridge must ask for. A round reads the input blocks one after the
    other through the ``Inverter``'s queue (a command waits for one read at
    most); rounds never overlap, so a slow bus makes them further apart, not
    more. An ``InverterObserver``: it starts on ``connection_changed(True)``.
    """

    log = Logger()

    def __init__(self, inverter: Inverter, *, clock: IReactorTime, poll_interval: float):
        self.inverter = inverter
        self.name = f"{inverter.name} poller"
        self.poll_interval = poll_interval
        self._clock = clock
        self._poll_call: IDelayedCall | None = None
        self._polling = False
        self._blocks = INPUT_BLOCKS
        self._failing: str | None = None  # why the last read failed, until one succeeds
        inverter.add_observer(self)

    def startService(self) -> None:
        """Start the rounds if the inverter is already connected (a serial port opens at once)."""
        super().startService()
        if self.inverter.connected:
            self.connection_changed(True)

    def stopService(self):
        """Poll no more."""
        super().stopService()
        self._stop()

    # -- InverterObserver ---------------------------------------------------------------

    def connection_changed(self, connected: bool) -> None:
        """Start the rounds on connecting (the first at once); stop them on losing it."""
        if connected and self.running:
            self._blocks = INPUT_BLOCKS
            self._schedule(0)
        else:
            self._stop()

    def inputs_received(self, blocks) -> None:
        """Nothing to do: the bridge publishes them."""

    def registers_received(self, registers) -> None:
        """Nothing to do: the bridge publishes them."""

    # -- the rounds -------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._poll_call is None or not self._poll_call.active():
            self._poll_call = self._clock.callLater(delay, self._poll)

    def _stop(self) -> None:
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        self._poll_call = None

    def _poll(self) -> None:
        self._poll_call = None
        if self._polling or not self.inverter.connected:
            return
        self._polling = True
        self._round(list(self._blocks), self._clock.seconds())

    def _round(self, blocks: list[int], started: float) -> None:
        """Read ``blocks`` one after the other; then schedule the next round."""
        if not blocks or not self.inverter.connected or not self.running:
            self._polling = False
            if self.inverter.connected and self.running:
                elapsed = self._clock.seconds() - started
                self._schedule(max(0.0, self.poll_interval - elapsed))
            return
        register = blocks.pop(0)

        def answered(_) -> None:
            if self._failing is not None:
                self._failing = None
                self.log.info("{name}: the inverter answers the polls again",
                              name=self.inverter.name)

        def failed(failure: Failure) -> None:
            failure.trap(CommandFailed)
            reason = failure.value.reason
            if not self.running or reason in QUIET_REASONS:
                return
            last = register + BLOCK_SIZE - 1
            if reason.startswith("exception reply") and register == self._blocks[-1]:
                # A model without the last block says so once: not asked again.
                self._blocks = self._blocks[:-1]
                self.log.info("{name}: input registers {first}-{last}: {reason}; not asked"
                              " again on this connection", name=self.inverter.name,
                              first=register, last=last, reason=reason)
                return
            # An inverter that is off behind a gateway that is up fails every
            # read of every round: the first failure (and a new reason) is
            # worth a line, the rest only at debug.
            emit = self.log.debug if reason == self._failing else self.log.info
            self._failing = reason
            emit("{name}: input registers {first}-{last}: {reason}", name=self.inverter.name,
                 first=register, last=last, reason=reason)

        reading = self.inverter.read_input(register, BLOCK_SIZE)
        reading.addCallbacks(answered, failed)
        reading.addBoth(lambda _: self._round(blocks, started))


class ModbusLine(service.Service):
    """One RS485 line (a serial port, or a gateway) and the inverters on it, one unit each.

    Dials it for ever (``Dialer``: backoff, and one log line per loss or
    failed attempt), a serial port included, which ``SerialEndpoint`` makes an
    endpoint: one that disappears is reopened like a lost TCP connection. Each
    ``Inverter`` (built without an endpoint) is handed a ``UnitLink`` when the
    line comes up, and hears of its loss.
    """

    def __init__(self, endpoint, *, clock: IReactorTime, rtu: bool, address: str,
                 silence: float = 0.0, retry_policy=None):
        self.name = address
        self.address = address
        self._inverters: dict[int, Inverter] = {}
        self._links: dict[int, UnitLink] = {}
        factory = ModbusFactory(self, clock, rtu=rtu, silence=silence, name="RS485 line")
        self._dialer = Dialer(endpoint, factory, clock=clock, retry_policy=retry_policy,
                              name="RS485 line", address=address)

    @property
    def units(self) -> frozenset[int]:
        """The units of the inverters on this line."""
        return frozenset(self._inverters)

    def attach(self, inverter: Inverter, unit: int) -> None:
        """``inverter`` is ``unit`` on this line."""
        if unit in self._inverters:
            raise ValueError(f"{self.address}: unit {unit} twice")
        self._inverters[unit] = inverter

    def startService(self) -> None:
        """Start dialling (and redialling, for ever)."""
        super().startService()
        self._dialer.start()

    def stopService(self):
        """Stop redialling; fires once the line is closed."""
        super().stopService()
        return self._dialer.stop()

    # -- for ModbusProtocol -------------------------------------------------------------

    def connection_made(self, line: ModbusProtocol) -> None:
        """The line is up: every inverter on it is connected."""
        self._dialer.connected(line.peer)
        self._links = {unit: UnitLink(line, unit) for unit in self._inverters}
        for unit, inverter in self._inverters.items():
            link = self._links[unit]
            inverter.connection_made(link)
            if inverter.serial is None:
                # The inverter asks for its serial only after a grace period
                # in which a dongle's broadcast could have told it; none will
                # come here, so the question goes out at once (its requests
                # are held until the answer).
                link.send(lxp.ReadRequest(lxp.DeviceFunction.READ_INPUT, inverter.datalog,
                                          NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK, BLOCK_SIZE))

    def reply_received(self, unit: int, frame: lxp.Frame) -> None:
        """A reply from ``unit``: news for its inverter."""
        self._inverters[unit].frame_received(frame)

    def connection_lost(self, line: ModbusProtocol, reason: str) -> None:
        """The line is gone: so is every inverter's connection."""
        self._dialer.lost(reason)
        links, self._links = self._links, {}
        for unit, link in links.items():
            self._inverters[unit].connection_lost(link, reason)


def modbus_lines(reactor, inverters, *, connect_timeout: float = 10) -> list[ModbusLine]:
    """The ``ModbusLine`` of each RS485 line ``inverters`` name, each inverter on its own.

    ``inverters``: (``Inverter``, ``ModbusConfig``) pairs; those with the
    same address (a serial port, or a gateway's host and port) share a line.
    """
    lines: dict[str, ModbusLine] = {}
    for inverter, config in inverters:
        line = lines.get(config.address)
        if line is None:
            if config.scheme == "serial":
                endpoint = SerialEndpoint(reactor, config.path, config.baudrate)
                rtu, silence = True, modbus.silence_seconds(config.baudrate)
            else:
                endpoint = HostnameEndpoint(reactor, config.host, config.port,
                                            timeout=connect_timeout)
                rtu = config.scheme == "rtu-over-tcp"
                # The gateway puts our frames on the bus at its own pace; the
                # gap between them is kept for 19200 baud anyway: 2 ms.
                silence = modbus.silence_seconds(19200) if rtu else 0.0
            line = lines[config.address] = ModbusLine(
                endpoint, clock=reactor, rtu=rtu, silence=silence, address=config.address)
        line.attach(inverter, config.unit)
    return list(lines.values())
