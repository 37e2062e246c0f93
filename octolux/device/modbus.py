"""The inverter's own RS485 port, reached with Modbus instead of through a dongle.

Three transports carry the same Modbus requests: a Modbus TCP gateway (MBAP
framing), a gateway in transparent mode ("RTU over TCP") and a local serial
port (RTU). The ``Inverter`` above is the one the dongle path uses, unchanged:
it sends LXP request frames and hears LXP reply frames, and
``ModbusProtocol`` translates, register numbers being the same on both wires
(only the byte order differs, which ``octolux.modbus`` and ``octolux.lxp``
each handle). The ``Inverter`` dials through its ``ClientService`` as ever
(``SerialEndpoint`` makes a serial port an endpoint, so one that disappears is
reopened with backoff like a lost TCP connection) and learns the inverter
serial from input registers 115-119 as it does without broadcasts;
``ModbusPoller`` asks for the input registers, since nothing is broadcast on
RS485.
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
from octolux.device.inverter import CommandFailed, Inverter
from octolux.device.serials import NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK
from octolux.lxp.inputs import BLOCK_SIZE
from octolux.net.badframes import BadFrameLog
from octolux.net.endpoints import describe_peer, failure_phrase
from octolux.net.logging import debug_enabled

# The input blocks polled, 40 registers a read as the dongle and the peers
# (poldim/EG4-Inverter-Modbus) read them; the last one is skipped for the rest
# of a connection if the inverter refuses it (models without registers 120+).
INPUT_BLOCKS = (0, 40, 80, 120)


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
    """One Modbus link: LXP requests out as Modbus, Modbus replies in as LXP reply frames.

    Offers what the ``Inverter`` uses of an ``LxpProtocol`` (``send``,
    ``peer``, ``abort``) and reports to a ``FrameHandler``. One request at a
    time: a new ``send`` replaces the one waiting (the ``Inverter`` has given
    up on it). A reply answers it only if it comes from ``unit`` and fits it
    (``octolux.modbus.answers``; and its transaction number on Modbus TCP);
    anything else, a garbled frame or a reply for another unit, costs only itself.
    """

    log = Logger()

    def __init__(self, handler, clock: IReactorTime, *, unit: int, rtu: bool,
                 silence: float = 0.0, name: str = "modbus", peer: str | None = None):
        self.handler = handler
        self.name = name
        self.unit = unit
        self.rtu = rtu
        self.peer = peer or "?"
        self._fixed_peer = peer is not None
        self._clock = clock
        self._silence = silence  # seconds of quiet the bus needs before a request
        self._decoder = modbus.RtuDecoder() if rtu else modbus.TcpDecoder()
        self._transaction = 0
        self._waiting: tuple[lxp.Frame, modbus.Message] | None = None
        self._last_byte = float("-inf")
        self._delayed_send: IDelayedCall | None = None
        self._abort_reason: str | None = None
        self._foreign_units: set[int] = set()
        self._bad_frames = BadFrameLog(self.log, clock, name, self.peer)

    def connectionMade(self) -> None:
        """Tell the handler; requests may be sent from now on."""
        if not self._fixed_peer:
            self.peer = self._bad_frames.peer = describe_peer(self.transport.getPeer())
        # A gateway that died finds no other way to say so: we poll, but
        # only ever hear from the inverter behind it.
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(True)
        self.handler.connection_made(self)
        if self.handler.serial is None:
            # The inverter asks for its serial only after a grace period in
            # which a dongle's broadcast could have told it; no broadcast will
            # come here, so the question goes out at once (its requests are
            # held until the answer, so nothing else is on the bus).
            self.send(lxp.ReadRequest(lxp.DeviceFunction.READ_INPUT, self.handler.datalog,
                                      NOT_YET_KNOWN, SERIAL_QUESTION_BLOCK, BLOCK_SIZE))

    def dataReceived(self, data: bytes) -> None:
        """Feed the decoder; a reply to the waiting request goes to the handler as LXP."""
        self._last_byte = self._clock.seconds()
        if debug_enabled():
            self.log.debug("{name}: received {data.hex()}", name=self.name, data=data)
        for item in self._decoder.feed(data):
            if type(item) is lxp.BadFrame:
                self._bad_frames.report(item)
                continue
            self._message_received(item)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Stop the timers; tell the handler why the link ended."""
        self._bad_frames.close()
        if self._delayed_send is not None and self._delayed_send.active():
            self._delayed_send.cancel()
        self._delayed_send = None
        self._waiting = None
        self.handler.connection_lost(self, self._abort_reason or failure_phrase(reason))

    def send(self, frame: lxp.Frame) -> None:
        """Ask the inverter what LXP request ``frame`` asks, as a Modbus request to ``unit``."""
        try:
            pdu = _modbus_request(frame)
        except ValueError as problem:
            # A heartbeat echo or a dongle parameter: nothing on RS485 answers those.
            self.log.info("{name}: not sent: {problem}", name=self.name, problem=problem)
            return
        transaction = None
        if not self.rtu:
            self._transaction = (self._transaction + 1) & 0xFFFF
            transaction = self._transaction
        message = modbus.Message(self.unit, pdu, transaction)
        self._waiting = (frame, message)
        if self._delayed_send is not None and self._delayed_send.active():
            self._delayed_send.cancel()
        self._delayed_send = None
        # RTU: the bus must be quiet for 3.5 characters before a new frame, or
        # the inverter reads it as the tail of the last one.
        wait = self._last_byte + self._silence - self._clock.seconds()
        if self.rtu and wait > 0:
            self._delayed_send = self._clock.callLater(wait, self._write, message)
        else:
            self._write(message)

    def abort(self, reason: str) -> None:
        """Drop the link now; ``reason`` is what the handler will be told."""
        self._abort_reason = reason
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self.transport.loseConnection)()

    def _write(self, message: modbus.Message) -> None:
        self._delayed_send = None
        if self.rtu:
            # Whatever waits in the buffer now came before our request: it is
            # no part of the reply, and must not be taken for its start.
            for dropped in self._decoder.silence():
                self._bad_frames.report(dropped)
            data = modbus.encode_rtu(message)
        else:
            data = modbus.encode_tcp(message)
        if debug_enabled():
            self.log.debug("{name}: sending {data.hex()}", name=self.name, data=data)
        self._last_byte = self._clock.seconds()
        self.transport.write(data)

    def _message_received(self, message: modbus.Message) -> None:
        if message.unit != self.unit:
            if message.unit not in self._foreign_units and len(self._foreign_units) < 16:
                self._foreign_units.add(message.unit)
                self.log.info("{name}: ignoring replies from unit {other} (this inverter is"
                              " unit {unit})", name=self.name, other=message.unit, unit=self.unit)
            return
        waiting = self._waiting
        if waiting is None:
            self.log.debug("{name}: a reply nobody waits for: {message}", name=self.name,
                           message=message)
            return
        frame, request = waiting
        if message.transaction != request.transaction or not modbus.answers(request.pdu,
                                                                            message.pdu):
            self.log.debug("{name}: a reply that does not answer {request}: {message}",
                           name=self.name, request=request, message=message)
            return
        self._waiting = None
        try:
            self.handler.frame_received(_lxp_reply(frame, message.pdu))
        except Exception:
            # A bug in handling one reply must not cost the link.
            self.log.failure("{name}: error handling {message}", name=self.name,
                             message=message)


class ModbusFactory(protocol.Factory):
    """Builds a ``ModbusProtocol`` per connection, all reporting to one handler."""

    noisy = False

    def __init__(self, handler, clock: IReactorTime, **options):
        self._handler = handler
        self._clock = clock
        self._options = options

    def buildProtocol(self, addr) -> ModbusProtocol:
        """A protocol for one connection (or one opening of the serial port)."""
        # A serial port has no peer to ask for: its address is its name.
        peer = str(addr) if isinstance(addr, SerialAddress) else None
        built = ModbusProtocol(self._handler, self._clock, peer=peer, **self._options)
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

        def failed(failure: Failure) -> None:
            failure.trap(CommandFailed)
            reason = failure.value.reason
            if reason.startswith("exception reply") and register == self._blocks[-1]:
                # A model without the last block says so once: not asked again.
                self._blocks = self._blocks[:-1]
                again = "; not asked again on this connection"
            else:
                again = ""
            self.log.info("{name}: input registers {first}-{last}: {reason}{again}",
                          name=self.inverter.name, first=register,
                          last=register + BLOCK_SIZE - 1, reason=reason, again=again)

        reading = self.inverter.read_input(register, BLOCK_SIZE)
        reading.addCallbacks(lambda _: None, failed)
        reading.addBoth(lambda _: self._round(blocks, started))


def modbus_transport(reactor, config, *, name: str, connect_timeout: float = 10):
    """The endpoint and the ``Inverter``'s ``protocol_factory`` that ``config`` describes.

    ``config`` is a ``ModbusConfig``: a Modbus TCP or RTU-over-TCP gateway, or a serial port.
    """
    if config.scheme == "serial":
        endpoint = SerialEndpoint(reactor, config.path, config.baudrate)
        rtu, silence = True, modbus.silence_seconds(config.baudrate)
    else:
        endpoint = HostnameEndpoint(reactor, config.host, config.port, timeout=connect_timeout)
        rtu = config.scheme == "rtu-over-tcp"
        # The gateway puts our frames on the bus at its own pace; the gap
        # between them is kept for 19200 baud anyway, which costs 2 ms.
        silence = modbus.silence_seconds(19200) if rtu else 0.0

    def protocol_factory(handler) -> ModbusFactory:
        return ModbusFactory(handler, reactor, unit=config.unit, rtu=rtu, silence=silence,
                             name=name)

    return endpoint, protocol_factory
