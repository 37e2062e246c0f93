"""Real dongles' captured frames, replayed over TCP to the whole bridge with a real mosquitto.

Fake dongles (tests/replay_support.py) send the frames of tests/data/dongles.json
exactly as captured: their own serials, protocol 1, 2 and 5, address byte 0
and 1, pushes of holding registers on connecting, 127-register input frames,
heartbeats ending 00 and 05, two frames glued in one TCP read, and the frames
that are broken as published. The bridge (build_service, in this process) has
no serial in its config: it learns each from the frames. Every holding
register value reaches ``hold/<register>``, every input block a frame covers
reaches ``inputs/<n>`` with the captured values, and every input register is
served raw by ``/api/<name>/registers?kind=input``.
"""

from __future__ import annotations

import itertools
import json

import pytest_twisted
from e2e_support import MqttProbe, get, poll_until
from replay_support import FakeDongle, captures
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from octolux import lxp
from octolux.config.ini import Config, InverterConfig, MqttConfig, ServerConfig
from octolux.service.tap import build_service

TIMEOUT = 30.0  # seconds for every captured value to arrive
_prefixes = itertools.count()


class Replay:
    """Fake dongles, the bridge serving one inverter section per dongle, a probe on the broker."""

    def __init__(self, mosquitto, dongles: list[FakeDongle], ports: list[int],
                 command_timeout: float = 10.0):
        self.dongles = dongles
        self.names = [f"dongle{index}" for index in range(len(dongles))]
        self.prefix = f"replay-{next(_prefixes)}"
        self.config = Config(
            inverters=tuple(
                InverterConfig(name=name, host="127.0.0.1", port=port, serial=None, datalog=None,
                               command_timeout=command_timeout)
                for name, port in zip(self.names, ports, strict=True)
            ),
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=self.prefix),
        )
        self.service = build_service(self.config, reactor)
        self.inverters = {s.name: s for s in self.service if s.name in self.names}
        self.api = [s for s in self.service if hasattr(s, "site")][0]
        self.probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{self.prefix}/#"])

    def topic(self, name: str, rest: str) -> str:
        """A topic of inverter ``name`` (with several inverters, each has its name in them)."""
        return f"{self.prefix}/{name}/{rest}" if len(self.names) > 1 else f"{self.prefix}/{rest}"

    def seen(self, name: str):
        """What reached the broker on inverter ``name``'s topics: topic below it -> payloads."""
        payloads: dict[str, set[str]] = {}
        for message in self.probe.messages:
            payloads.setdefault(message.topic, set()).add(message.text)
        return lambda rest: payloads.get(self.topic(name, rest), set())

    async def all_arrived(self) -> None:
        """Wait until every dongle has sent its capture, and its every value is on the broker.

        Each valid frame is one frame the bridge decoded, each broken one at
        least one bad frame it reported (so they cost only themselves).
        """
        def missing():
            absent = []
            for name, dongle in zip(self.names, self.dongles, strict=True):
                capture = dongle.capture
                absent += [f"{name}: {what}" for what in capture.missing(self.seen(name))]
                protocol = self.inverters[name].protocol
                if not dongle.replayed or protocol is None:
                    absent.append(f"{name}: not all sent")
                    continue
                decoder = protocol.decoder
                if decoder.frames_decoded < len(capture.frames):
                    absent.append(f"{name}: {decoder.frames_decoded} frames")
                if sum(decoder.rejected.values()) < len(capture.broken):
                    absent.append(f"{name}: bad frames {dict(decoder.rejected)}")
            return absent

        await poll_until(reactor, lambda: not missing(), TIMEOUT,
                         "every captured value on the broker",
                         lambda: f"missing: {missing()[:20]}")

    async def registers(self, name: str, kind: str) -> dict[str, int]:
        """``GET /api/<name>/registers?kind=<kind>`` (``/api/registers`` with one inverter)."""
        path = f"{name}/registers" if len(self.names) > 1 else "registers"
        url = f"http://127.0.0.1:{self.api.port}/api/{path}?kind={kind}"
        response, body = await get(reactor, url)
        assert response.code == 200
        return json.loads(body)

    async def stop(self) -> None:
        await self.service.stopService().addTimeout(10, reactor)
        for dongle in self.dongles:
            await dongle.stop()
        await self.probe.close(reactor)


async def replay(mosquitto, dongles: list[FakeDongle], **options) -> Replay:
    """Start ``dongles`` and a bridge for them; return it running."""
    ports = [await dongle.listen() for dongle in dongles]
    running = Replay(mosquitto, dongles, ports, **options)
    await running.probe.ready(reactor)
    running.service.startService()
    return running


@pytest_twisted.ensureDeferred
async def test_every_captured_value_reaches_mqtt_and_the_api(mosquitto):
    dongles = [FakeDongle(reactor, capture) for capture in captures()]
    running = await replay(mosquitto, dongles)
    try:
        await running.all_arrived()
        for name, dongle in zip(running.names, dongles, strict=True):
            capture = dongle.capture
            inverter = running.inverters[name]
            # Learned, as no serial is configured: the dongle's, and its inverter's.
            assert inverter.datalog == capture.datalog, name
            assert inverter.serial == capture.serial, name
            raw = {str(r): v for r, v in sorted(capture.input_registers().items())}
            assert await running.registers(name, "input") == raw, name
            holding = dict(capture.hold_values())
            assert await running.registers(name, "hold") == {
                str(r): v for r, v in sorted(holding.items())}, name
            # Its frames, and nothing else (the dongles answer no request).
            assert inverter.protocol.decoder.frames_decoded == len(capture.frames), name
            assert dongle.connections == 1, name  # no connection was dropped
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_a_write_refused_with_an_address_0_exception_reply_fails_at_once(mosquitto):
    # A DG dongle (address 0 on its replies) refuses the write: FAIL with the
    # reason, long before the command timeout (600 s) could fail it. It refuses
    # the reads of every holding register on connecting too: they are skipped.
    capture = next(c for c in captures() if c.datalog == "DG43908154")
    dongle = FakeDongle(reactor, capture, refuse=True)
    running = await replay(mosquitto, [dongle], command_timeout=600.0)
    results = []

    def observe(event):
        if "-> FAIL" in event.get("log_format", ""):
            results.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        (name,) = running.names
        await running.all_arrived()  # the serial learned from the address-0 hold reply
        assert running.inverters[name].serial == "43940T0094"
        running.probe.publish(running.topic(name, "cmd/discharge_pct"), b"50")
        result = await running.probe.next_on(reactor, running.topic(name, "result/discharge_pct"))
        assert result.text == "FAIL"
        assert [r["why"] for r in results] == ["exception reply: ILLEGAL_VALUE"]
        writes = [r for r in dongle.requests if isinstance(r, lxp.WriteSingleRequest)]
        assert [(w.register, w.value) for w in writes] == [(65, 50)]
    finally:
        globalLogPublisher.removeObserver(observe)
        await running.stop()
