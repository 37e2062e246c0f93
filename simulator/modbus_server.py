"""The simulated inverter's RS485 port: its plant served over Modbus TCP or RTU.

``--modbus tcp:PORT`` (Modbus TCP), ``--modbus rtu-over-tcp:PORT`` (RTU frames
in a TCP stream, as a gateway in transparent mode passes them) or
``--modbus pty:PATH`` (RTU on a new pseudo-terminal, whose other end is
linked at PATH: the bridge opens it as ``serial://PATH``). Each simulated
inverter (``--count``) is one unit on the bus, 1, 2, ...: a request is
answered by the same code that answers it over the dongle, so a write
changes the simulated battery either way. Requests for another unit are
ignored, as on a real bus.
"""

from __future__ import annotations

import os
import tty

import attrs
from twisted.application import service
from twisted.internet import protocol
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from octolux import lxp, modbus

SCHEMES = ("tcp", "rtu-over-tcp", "pty")


@attrs.frozen
class ModbusListen:
    """Where the simulator serves Modbus: ``scheme`` and a TCP ``port`` or a pty link ``path``."""

    scheme: str
    port: int = 0
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModbusListen:
        """``tcp:5020``, ``rtu-over-tcp:5021`` or ``pty:/tmp/inverter``; ValueError says why."""
        scheme, colon, rest = text.partition(":")
        if not colon or scheme not in SCHEMES or not rest:
            raise ValueError(f"not tcp:PORT, rtu-over-tcp:PORT or pty:PATH: {text!r}")
        if scheme == "pty":
            return cls(scheme, path=rest)
        if not rest.isdigit() or not 0 <= int(rest) <= 65535:
            raise ValueError(f"not a port number (0-65535): {text!r}")
        return cls(scheme, port=int(rest))


def _lxp_request(dongle, pdu) -> lxp.Frame:
    """The LXP request the dongle would have relayed for Modbus request ``pdu``."""
    config = dongle.config
    if type(pdu) is modbus.ReadRequest:
        return lxp.ReadRequest(int(pdu.function), config.datalog, config.inverter, pdu.address,
                               pdu.count)
    if type(pdu) is modbus.WriteSingle:
        return lxp.WriteSingleRequest(config.datalog, config.inverter, pdu.address, pdu.value)
    return lxp.WriteMultiRequest(config.datalog, config.inverter, pdu.address, pdu.values)


def _modbus_response(reply: lxp.Frame):
    """The Modbus response carrying what LXP ``reply`` carries."""
    kind = type(reply)
    if kind is lxp.ReadReply:
        return modbus.ReadResponse(int(reply.function), reply.values)
    if kind is lxp.WriteSingleReply:
        return modbus.WriteSingle(reply.register, reply.value)
    if kind is lxp.WriteMultiReply:
        return modbus.WriteMultipleResponse(reply.register, reply.count)
    return modbus.ExceptionResponse(int(reply.function), reply.code)


class ModbusServerProtocol(protocol.Protocol):
    """One Modbus client (TCP) or the serial line (pty): requests in, the plant's answers out."""

    log = Logger()

    def __init__(self, responders: dict[int, object], *, rtu: bool):
        # unit -> the simulated dongle (its DongleFactory: sync_plant, answer_request)
        self.responders = responders
        self.rtu = rtu
        self._decoder = modbus.RtuDecoder(requests=True) if rtu else modbus.TcpDecoder(
            requests=True)

    def dataReceived(self, data: bytes) -> None:
        """Answer every whole request for one of our units; log what was garbled."""
        for item in self._decoder.feed(data):
            if type(item) is lxp.BadFrame:
                self.log.info("modbus: dropped {length} bytes: {reason}", length=len(item.data),
                              reason=item.reason)
                continue
            responder = self.responders.get(item.unit)
            if responder is None:
                continue  # another device's request (or a broadcast): not ours to answer
            self.log.info("modbus: unit {unit}: {pdu}", unit=item.unit, pdu=item.pdu)
            # The same answer as over the dongle (logged, saved), its one reply frame.
            responder.sync_plant()
            reply = responder.answer_request(_lxp_request(responder, item.pdu)).frames[0]
            answer = modbus.Message(item.unit, _modbus_response(reply), item.transaction)
            self.transport.write(modbus.encode_rtu(answer) if self.rtu
                                 else modbus.encode_tcp(answer))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Nothing to clean up: the plant lives on."""


class ModbusServerFactory(protocol.Factory):
    """Builds a ``ModbusServerProtocol`` per TCP client, all serving the same units."""

    noisy = False

    def __init__(self, responders: dict[int, object], *, rtu: bool):
        self.responders = responders
        self.rtu = rtu

    def buildProtocol(self, addr) -> ModbusServerProtocol:
        """A protocol for one client."""
        return ModbusServerProtocol(self.responders, rtu=self.rtu)


class ModbusServer(service.Service):
    """Serves the simulated inverters' plants over Modbus while running."""

    log = Logger()

    def __init__(self, reactor, where: ModbusListen, responders: dict[int, object],
                 interface: str = "127.0.0.1"):
        self._reactor = reactor
        self.where = where
        self.responders = responders
        self._interface = interface
        self._port = None
        self._pty: tuple[int, int] | None = None
        self._serving = None

    def startService(self) -> None:
        """Listen on the TCP port, or open the pty and link its other end at the path."""
        super().startService()
        rtu = self.where.scheme != "tcp"
        units = ", ".join(str(unit) for unit in self.responders)
        if self.where.scheme == "pty":
            self._serve_pty(units)
            return
        endpoint = TCP4ServerEndpoint(self._reactor, self.where.port, interface=self._interface)
        listening = endpoint.listen(ModbusServerFactory(self.responders, rtu=rtu))

        def listening_at(port) -> None:
            self._port = port
            self.log.info("modbus: serving units {units} over {scheme} on {host}:{port}",
                          units=units, scheme="RTU over TCP" if rtu else "Modbus TCP",
                          host=port.getHost().host, port=port.getHost().port)

        listening.addCallbacks(listening_at, lambda failure: self.log.error(
            "modbus: cannot listen: {error}", error=failure.getErrorMessage()))

    def _serve_pty(self, units: str) -> None:
        from twisted.internet.stdio import StandardIO

        primary, secondary = os.openpty()
        # Raw: bytes pass as they are (no echo, no line editing, no CR/LF mapping).
        tty.setraw(primary)
        tty.setraw(secondary)
        # The secondary end stays open here too, so that the bridge closing
        # and reopening it (a serial port unplugged) does not end our side.
        self._pty = (primary, secondary)
        link = self.where.path
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.ttyname(secondary), link)
        # Reading and writing through one descriptor would register it twice
        # with the reactor, the writer replacing the reader: a copy writes.
        self._serving = StandardIO(ModbusServerProtocol(self.responders, rtu=True),
                                   stdin=primary, stdout=os.dup(primary), reactor=self._reactor)
        self.log.info("modbus: serving units {units} over RTU on {path} ({tty})", units=units,
                      path=link, tty=os.ttyname(secondary))

    @property
    def port(self) -> int | None:
        """The TCP port served, once listening."""
        return None if self._port is None else self._port.getHost().port

    def stopService(self):
        """Stop listening, or close the pty and remove its link."""
        super().stopService()
        if self._serving is not None:
            self._serving.loseConnection()
            self._serving = None
        if self._pty is not None:
            for fd in self._pty[1:]:
                os.close(fd)
            self._pty = None
            if os.path.islink(self.where.path):
                os.unlink(self.where.path)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None
