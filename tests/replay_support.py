"""Real dongles replayed: the captured frames of tests/data/dongles.json, sent by fake dongles.

For tests/test_replay.py and bench/replay.py. A ``Capture`` is what one
dongle sent, as captured: every frame of one source and datalog serial that a dongle sends
(replies, pushes, heartbeats, parameter replies; requests are a client's, and
are left out), the broken ones among them, and the two frames published glued
in one TCP read, sent as that one read. A ``FakeDongle`` is a real TCP server
that sends one capture's bytes, exactly as captured, to whoever connects, and
can refuse every request with an exception reply addressed 0 (as BJ and DG
dongles and EG4 inverters address their replies).

What the bridge should publish is worked out from each valid frame alone
(``Capture.hold_values``, ``input_blocks``, ``input_registers``), not from a
stream decoder, so that the replay tests the bridge's framing too.

Not a test module (it defines no tests).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable

import attrs
from twisted.internet import endpoints, protocol
from vectors import DONGLE_KINDS, DONGLES, GLUED, GLUED_PARTS, dongle_bytes, sent_by

from octolux import lxp
from octolux.lxp.inputs import block_range, decode_input_blocks

FROM_DONGLE = lxp.Direction.FROM_DONGLE
READ_INPUT = lxp.DeviceFunction.READ_INPUT
READ_HOLD = lxp.DeviceFunction.READ_HOLD
WRITE_GAP = 0.005  # seconds between a fake dongle's writes: one TCP segment each, mostly
# What reached the broker: topic (below the inverter's base) -> payloads seen on it.
Seen = Callable[[str], set[str]]


def source_of(name: str) -> str:
    """The capture source a vector's name starts with (``sna``, ``lxpbridge``, ``eg4``, ...)."""
    return name.split("_", 1)[0]


def _datalog_of(data: bytes) -> str | None:
    """The datalog serial field of a frame's bytes, if there are that many."""
    return data[8:18].decode("latin-1") if len(data) >= 18 else None


def _is_push(name: str) -> bool:
    return "unsolicited" in name or "push" in name


@attrs.frozen
class Capture:
    """What one dongle sent, as captured: vectors in the order a fake dongle sends them."""

    source: str  # where the frames were published (``source_of``)
    datalog: str
    names: tuple[str, ...]  # one write each

    def writes(self) -> list[bytes]:
        """The bytes of each write, exactly as captured."""
        return [dongle_bytes(name) for name in self.names]

    @property
    def frames(self) -> list[lxp.Frame]:
        """The valid frames it carries, in order (the glued read gives two)."""
        found = []
        for name in self.names:
            for part in GLUED_PARTS if name == GLUED else (name,):
                if part in DONGLE_KINDS:
                    found.append(lxp.parse(dongle_bytes(part), FROM_DONGLE))
        return found

    @property
    def broken(self) -> list[str]:
        """The vectors that are no valid frame as published."""
        return [name for name in self.names if name not in DONGLE_KINDS and name != GLUED]

    @property
    def serial(self) -> str | None:
        """The inverter serial its first reply names: what the bridge learns."""
        return next((frame.inverter for frame in self.frames if hasattr(frame, "inverter")), None)

    def hold_values(self) -> list[tuple[int, int]]:
        """Every (holding register, value) its frames carry, in order: each is news."""
        values = []
        for frame in self.frames:
            if type(frame) is lxp.ReadReply and frame.function == READ_HOLD:
                values += frame.registers.items()
            elif type(frame) is lxp.WriteSingleReply:
                values.append((frame.register, frame.value))
        return values

    def input_frames(self) -> list[lxp.ReadReply]:
        """Its frames of input registers."""
        return [frame for frame in self.frames
                if type(frame) is lxp.ReadReply and frame.function == READ_INPUT]

    def input_blocks(self) -> list[tuple[int, dict]]:
        """Every (block, named values) an ``inputs/<block>`` message must carry."""
        return [item for frame in self.input_frames()
                for item in decode_input_blocks(frame.register, frame.values).items()]

    def input_registers(self) -> dict[int, int]:
        """The latest raw value of every input register it sent."""
        latest: dict[int, int] = {}
        for frame in self.input_frames():
            latest.update(frame.registers)
        return latest

    def values_sent(self) -> int:
        """How many register values (holding and input) its frames carry."""
        return len(self.hold_values()) + sum(len(f.values) for f in self.input_frames())

    def missing(self, seen: Seen) -> list[str]:
        """What of it has not reached the broker: ``hold/21=128``, ``inputs/1 {...}``."""
        # A holding register's latest value must reach its retained topic; one it
        # superseded may not: while the publish path is behind, retained state is
        # coalesced to the latest value per topic (issue 19).
        latest = dict(self.hold_values())
        absent = [f"hold/{register}={value}" for register, value in latest.items()
                  if str(value) not in seen(f"hold/{register}")]
        absent += [f"inputs/{block} {values}" for block, values in self.input_blocks()
                   if not _published(seen, block, values)]
        return absent

    def values_reached(self, seen: Seen) -> int:
        """How many of its register values reached the broker, as captured.

        A holding register's on ``hold/<register>``; an input register's in
        the ``inputs/<n>`` message of its block, if a frame covers the block
        (the others have no topic; ``/api/registers?kind=input`` serves them).
        """
        count = sum(str(value) in seen(f"hold/{register}")
                    for register, value in self.hold_values())
        for frame in self.input_frames():
            for block, values in decode_input_blocks(frame.register, frame.values).items():
                if _published(seen, block, values):
                    count += len(block_range(block))
        return count


def _published(seen: Seen, block: int, values: dict) -> bool:
    return values in [json.loads(text) for text in seen(f"inputs/{block}")]


def captures() -> list[Capture]:
    """Every dongle of dongles.json: one per source and datalog serial that sent a valid frame.

    A broken vector whose serial sent nothing valid goes with its source's
    first dongle. Each dongle sends its pushes first (as on connecting), then
    its broken frames, then the rest; a broken frame is never last (a frame
    cut short waits for bytes that never come, where a real link goes on).
    """
    sent = [name for name in DONGLES
            if name not in GLUED_PARTS
            and (name not in DONGLE_KINDS or sent_by(DONGLE_KINDS[name]) is FROM_DONGLE)]
    def key(name: str) -> tuple[str, str | None]:
        return source_of(name), _datalog_of(dongle_bytes(name))

    dongles: dict[tuple[str, str | None], list[str]] = collections.defaultdict(list)
    valid = {key(name) for name in sent if name in DONGLE_KINDS or name == GLUED}
    homeless = []
    for name in sent:
        (dongles[key(name)] if key(name) in valid else homeless).append(name)
    for name in homeless:
        home = next(k for k in dongles if k[0] == source_of(name))
        dongles[home].append(name)
    return [Capture(source, datalog, tuple(_ordered(names)))
            for (source, datalog), names in dongles.items()]


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    good = [n for n in names if n in DONGLE_KINDS or n == GLUED]
    pushes = [n for n in good if _is_push(n)]
    rest = [n for n in good if n not in pushes]
    broken = [n for n in names if n not in good]
    return pushes + broken + rest if rest else broken + pushes


# -- the fake dongle ---------------------------------------------------------------------


class _DongleConnection(protocol.Protocol):
    """One client of a fake dongle: gets the capture's writes, may have its requests refused."""

    factory: FakeDongle

    def connectionMade(self) -> None:
        self._decoder = lxp.FrameDecoder(lxp.Direction.TO_DONGLE)
        self._calls = [
            self.factory.reactor.callLater(index * WRITE_GAP, self._write, data)
            for index, data in enumerate(self.factory.capture.writes())
        ]
        self.factory.connections += 1

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.factory.writes_done += 1

    def dataReceived(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            if isinstance(frame, lxp.BadFrame):
                continue
            self.factory.requests.append(frame)
            if self.factory.refuse and frame.tcp_function == lxp.TcpFunction.TRANSLATED_DATA:
                # As a DG dongle answers: address 0, protocol 5.
                code = (lxp.ExceptionCode.ILLEGAL_ADDRESS if type(frame) is lxp.ReadRequest
                        else lxp.ExceptionCode.ILLEGAL_VALUE)
                self.transport.write(lxp.build(lxp.ExceptionReply(
                    frame.function, frame.datalog, frame.inverter, frame.register, code,
                    protocol=5, address=0)))

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        for call in self._calls:
            if call.active():
                call.cancel()


class FakeDongle(protocol.Factory):
    """A TCP server on 127.0.0.1 that replays one ``Capture`` to each client that connects."""

    protocol = _DongleConnection
    noisy = False

    def __init__(self, reactor, capture: Capture, *, refuse: bool = False):
        """``refuse``: answer every read with ILLEGAL_ADDRESS, every write with ILLEGAL_VALUE."""
        self.reactor = reactor
        self.capture = capture
        self.refuse = refuse
        self.requests: list[lxp.Frame] = []  # every request a client sent
        self.connections = 0
        self.writes_done = 0  # the capture's writes made, all clients together
        self.port = None

    @property
    def replayed(self) -> bool:
        """Has a client been sent the whole capture?"""
        return self.writes_done >= len(self.capture.names)

    async def listen(self) -> int:
        """Start listening on a free port of 127.0.0.1; return the port."""
        endpoint = endpoints.TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(self)
        return self.port.getHost().port

    async def stop(self) -> None:
        """Stop listening (the bridge closes its connections when it stops)."""
        if self.port is not None:
            await self.port.stopListening()
