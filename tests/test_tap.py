"""twistd octolux: options, the config file becoming services, and start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application import service
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python import usage

from octolux.device.inverter import Inverter
from octolux.mqtt.client import MqttService
from octolux.net import logging
from octolux.service.tap import Options, build_service, makeService
from octolux.web.api import ApiService

ROOT = Path(__file__).resolve().parent.parent
LXP = "[lxp]\nhost = 127.0.0.1\nport = 8000\nserial = 0252016062\ndatalog = BA10330137\n"


def options_for(tmp_path, text: str, *args: str) -> Options:
    path = tmp_path / "octolux.ini"
    path.write_text(text)
    options = Options()
    options.parseOptions(["-c", str(path), *args])
    return options


def test_the_config_file_defaults_to_config_ini_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.ini").write_text(LXP)
    options = Options()
    options.parseOptions([])
    assert options["config"] == "config.ini"
    assert options.config.inverters[0].host == "127.0.0.1"


def test_a_config_error_ends_start_up_with_one_line(tmp_path):
    with pytest.raises(SystemExit) as caught:
        options_for(tmp_path, LXP + "port = abc\n")
    message = caught.value.code
    assert message.startswith("octolux: ")
    assert message.endswith("octolux.ini: [lxp] port: not a number: 'abc'")
    assert "\n" not in message


def test_a_missing_config_file_ends_start_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^octolux: config\.ini: cannot read: No such file"):
        Options().parseOptions([])


def test_log_level_option_overrides_the_file(tmp_path):
    options = options_for(tmp_path, LXP + "[log]\nlevel = error\n", "--log-level", "DEBUG")
    assert options.config.log_level == "debug"
    assert options_for(tmp_path, LXP + "[log]\nlevel = error\n").config.log_level == "error"
    with pytest.raises(usage.UsageError, match="--log-level: not one of"):
        options_for(tmp_path, LXP, "--log-level", "chatty")
    logging.set_level("info")


def test_the_level_filter_drops_what_is_below_the_level():
    try:
        logging.set_level("warn")
        assert logging.levels(_event(LogLevel.info)).name == "no"
        assert logging.levels(_event(LogLevel.warn)).name == "maybe"
        logging.set_level("debug")
        assert logging.levels(_event(LogLevel.debug)).name == "maybe"
    finally:
        logging.set_level("info")


def test_client_service_retry_lines_only_at_debug():
    # The inverter's own line already says why and when it retries.
    retry = {"log_level": LogLevel.info,
             "log_namespace": "twisted.application._client_service.ClientService"}
    try:
        assert logging.levels(retry).name == "no"
        assert logging.levels(dict(retry, log_level=LogLevel.warn)).name == "maybe"
        logging.set_level("debug")
        assert logging.levels(retry).name == "maybe"
    finally:
        logging.set_level("info")


def _event(level):
    return {"log_level": level, "log_namespace": "octolux.test"}


def test_the_example_config_is_valid(tmp_path):
    options = Options()
    options.parseOptions(["-c", str(ROOT / "config.ini.example")])
    assert options.config.inverters[0].serial == "0123456789"


def test_services_without_mqtt(tmp_path):
    options = options_for(tmp_path, LXP)
    with capturedLogs() as events:
        top = makeService(options)
    kinds = [type(child) for child in top]
    assert kinds == [ApiService, Inverter]
    assert "No [mqtt] uri in the configuration: MQTT is off" in [formatEvent(e) for e in events]
    assert not top.running  # nothing connects until twistd starts it


def test_services_with_mqtt_and_two_inverters(tmp_path):
    text = LXP + (
        "name = main\n[lxp garage]\nhost = 127.0.0.2\nserial = 0252016063\ndatalog = BA10330178\n"
        "[mqtt]\nuri = mqtt://user:hunter2@127.0.0.1:1\nprefix = home\n[solcast]\nx = 1\n"
    )
    with capturedLogs() as events:
        top = makeService(options_for(tmp_path, text))
    children = list(top)
    assert [type(child) for child in children] == [ApiService, MqttService, Inverter, Inverter]
    mqtt = children[1]
    assert mqtt.max_queued == 1000  # QoS 1 messages waiting for the broker, at most
    # One subscription covers every inverter's commands.
    assert mqtt._topic_filters == ("home/+/cmd/#",)
    assert [child.name for child in children[2:]] == ["main", "garage"]
    lines = [formatEvent(e) for e in events]
    assert any("[solcast]: not used by octolux, ignored" in line for line in lines)
    assert not [line for line in lines if "hunter2" in line]


def test_mqtt_stops_only_once_the_inverters_have_stopped():
    order = []

    class Recorder(service.Service):
        def __init__(self, name, stopping=None):
            self.label = name
            self.stopping = stopping

        def stopService(self):
            order.append(self.label)
            super().stopService()
            return self.stopping

    from octolux.service.tap import OctoluxService

    # The inverter takes its time to close (its connection, its last FAILs).
    inverter_closed = defer.Deferred()
    mqtt = Recorder("mqtt")
    top = OctoluxService(mqtt)
    for child in (Recorder("api"), mqtt, Recorder("inverter", inverter_closed)):
        child.setServiceParent(top)
    top.startService()
    stopped = top.stopService()
    assert order == ["inverter", "api"]
    assert not stopped.called
    inverter_closed.callback(None)
    assert order == ["inverter", "api", "mqtt"]
    assert stopped.called


def test_build_service_takes_a_config_not_a_file(tmp_path):
    options = options_for(tmp_path, LXP)
    top = build_service(options.config, reactor=MemoryReactorClock())
    assert len(list(top)) == 2
