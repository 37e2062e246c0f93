"""The battery plan in a real Home Assistant: its sensors show the plan, its button pauses it.

mosquitto, the simulator, the fake Octopus API of test_automation_e2e, the bridge
with ``[homeassistant]`` and the automation, and Home Assistant (as
tests/test_homeassistant.py starts it), asked through its own APIs.
"""

from __future__ import annotations

import datetime
import time

import pytest_twisted
from e2e_support import MqttProbe, poll_until
from ha_support import HomeAssistant
from test_automation_e2e import PRODUCT, TARIFF, FakeOctopus, served_prices
from twisted.internet import reactor, task
from twisted.web import server

from octolux.automation.planner import ACTIONS
from octolux.config.ini import (
    AutomationConfig,
    Config,
    HomeAssistantConfig,
    InverterConfig,
    MqttConfig,
    ServerConfig,
)
from octolux.service.tap import build_service
from simulator.dongle import start_simulator

HA_PREFIX = "ha-plan"
PREFIX = "octolux-plan"
NODE = "octolux_siminv0009"
WAIT = 30.0


async def until_states(ha, condition, what: str):
    deadline = reactor.seconds() + WAIT
    while True:
        states = await ha.states(reactor)
        if condition(states):
            return states
        if reactor.seconds() > deadline:
            shown = {k: v["state"] for k, v in states.items() if "plan" in k}
            raise AssertionError(f"timed out waiting for {what}: {shown};"
                                 f" Home Assistant log:\n{ha.log_tail(10)}")
        await task.deferLater(reactor, 0.25, lambda: None)


@pytest_twisted.ensureDeferred
async def test_the_plan_sensors_show_the_plan_and_the_button_pauses_it(mosquitto, tmp_path):
    probe = MqttProbe(mosquitto.host, mosquitto.port, [f"{HA_PREFIX}/#", f"{PREFIX}/#"])
    await probe.ready(reactor)
    ha = HomeAssistant(tmp_path / "homeassistant", mosquitto.host, mosquitto.port, HA_PREFIX)
    dongle = await start_simulator(reactor, datalog="SIMDL00009", inverter="SIMINV0009",
                                   interval=2.0, burst_gap=0.05, first_burst_delay=0.1,
                                   seed=9).addTimeout(5, reactor)
    prices, cheap = served_prices(time.time())
    api = FakeOctopus(prices)
    listening = reactor.listenTCP(0, server.Site(api), interface="127.0.0.1")
    api.port = listening.getHost().port
    service = None
    try:
        await ha.start(reactor, lambda: [m for m in probe.on(f"{HA_PREFIX}/status")
                                         if m.text == "online"])
        config = Config(
            inverters=(InverterConfig(name="inverter", host="127.0.0.1", port=dongle.port,
                                      serial="SIMINV0009", datalog="SIMDL00009",
                                      command_timeout=5.0),),
            server=ServerConfig(port=0),
            mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix=PREFIX),
            homeassistant=HomeAssistantConfig(enabled=True, prefix=HA_PREFIX),
            automation=AutomationConfig(
                planner="original", product=PRODUCT, tariff=TARIFF,
                url=f"http://127.0.0.1:{api.port}", cache=str(tmp_path / "prices.json"),
                required_soc=0.0, emergency_soc=0.0, cheap_charge=5.0),
        )
        service = build_service(config, reactor)
        service.startService()

        def shown(states):
            values = {key: states.get(f"sensor.{NODE}_{key}", {}).get("state")
                      for key in ("plan_price", "plan_action", "plan_next_charge",
                                  "plan_summary")}
            return values if None not in values.values() and "unknown" not in values.values() \
                and "unavailable" not in values.values() else None

        states = await until_states(ha, shown, "the plan sensors with values")
        values = shown(states)
        float(values["plan_price"])
        assert values["plan_action"] in ACTIONS
        assert datetime.datetime.fromisoformat(values["plan_next_charge"]).timestamp() == \
            cheap[0]
        assert "discharge above" in values["plan_summary"]

        await ha.call_service(reactor, "button", "press", entity_id=f"button.{NODE}_plan_pause")
        await poll_until(reactor, lambda: [m for m in probe.on(f"{PREFIX}/result/plan_pause")
                                           if m.text == "OK"], WAIT, "plan_pause OK")
        assert ha.problems() == []
    finally:
        if service is not None:
            await service.stopService().addTimeout(10, reactor)
        await ha.stop(reactor)
        await dongle.stop().addTimeout(5, reactor)
        await listening.stopListening()
        await probe.close(reactor)
