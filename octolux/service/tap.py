"""``twistd octolux``: command-line options and the service tree. Wiring only."""

from __future__ import annotations

import gc
import ipaddress

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from octolux.automation.service import automation
from octolux.config.ini import (
    LOG_LEVELS,
    Config,
    ConfigError,
    InverterConfig,
    host_and_port,
    load_config,
)
from octolux.device.commands import Topics
from octolux.device.inverter import Inverter
from octolux.device.listener import DongleListener, Route
from octolux.device.modbus import ModbusPoller, datalog_stand_in, modbus_lines
from octolux.device.pacing import Pacer
from octolux.device.runner import CommandRunner
from octolux.device.timesync import ClockKeeper
from octolux.history.service import HistoryService, open_stores
from octolux.homeassistant.batteries import BatteryDiscovery
from octolux.homeassistant.discovery import HomeAssistantDiscovery
from octolux.homeassistant.sweeper import OrphanSweeper
from octolux.mqtt.bridge import CommandRouter, InverterBridge
from octolux.mqtt.client import MqttService
from octolux.net import logging
from octolux.web.api import ApiService, JsonResource, api_root
from octolux.web.page import LiveInverter, Page

log = Logger()

CONNECT_TIMEOUT = 10  # seconds for one TCP connection attempt to the datalogger


class Options(usage.Options):
    """``twistd octolux [-c config.ini] [--log-level LEVEL]``."""

    synopsis = "[-c config.ini] [--log-level debug|info|warn|error|critical]"
    longdesc = (
        "Bridge a LuxPower inverter's WiFi datalogger to MQTT and an HTTP API. "
        "Every setting is described in config.ini.example."
    )
    optParameters = [
        ["config", "c", "config.ini", "The configuration file."],
        ["log-level", None, None, "Log events of this level and above "
         "(overrides [log] level; default info; debug adds the details)."],
    ]

    def postOptions(self) -> None:
        """Read the configuration; any mistake ends start-up with one line."""
        try:
            config = load_config(self["config"])
        except ConfigError as error:
            # Not a UsageError: twistd would print its whole usage text first,
            # burying the one line that says what is wrong. SystemExit prints
            # just the message, on stderr, and exits with status 1.
            raise SystemExit(f"octolux: {error}") from None
        level = self["log-level"]
        if level is not None:
            level = "warn" if level.lower() == "warning" else level.lower()
            if level not in LOG_LEVELS:
                choices = ", ".join(LOG_LEVELS)
                raise usage.UsageError(f"--log-level: not one of {choices}: {level!r}")
            config = attrs.evolve(config, log_level=level)
        self.config: Config = config
        logging.filter_twistd_log(getattr(self, "parent", None), config.log_level)


class OctoluxService(service.MultiService):
    """The bridge's services, stopped in order: the inverters first, MQTT and the history last.

    MQTT goes last so that whatever the inverters report while closing is still
    published, and ``offline`` is the final word; the history likewise records
    the last of it.
    """

    def __init__(self, mqtt: MqttService | None, history: HistoryService | None = None):
        super().__init__()
        self.mqtt = mqtt
        self.history = history
        self.page: Page | None = None  # what the web page shows

    def startService(self) -> None:
        """Start the children in order; a port the API cannot have ends the process."""
        try:
            super().startService()
        except CannotListenError:
            # The API service has logged the address and the reason; twistd
            # would add a traceback. The API starts first, so nothing else runs yet.
            raise SystemExit(1) from None

    def stopService(self) -> defer.Deferred:
        """Stop every other child (concurrently), then MQTT and the history."""
        service.Service.stopService(self)
        last = [child for child in (self.mqtt, self.history) if child is not None]
        others = [child for child in reversed(list(self)) if child not in last]
        stopping = defer.DeferredList(
            [defer.maybeDeferred(child.stopService) for child in others], consumeErrors=True
        )
        stopping.addCallback(_log_stop_failures)
        if last:
            stopping.addCallback(lambda _: defer.DeferredList(
                [defer.maybeDeferred(child.stopService) for child in last], consumeErrors=True
            ))
            stopping.addCallback(_log_stop_failures)
        return stopping


def _log_stop_failures(results) -> None:
    for succeeded, result in results:
        if not succeeded:
            log.failure("while stopping", result)


def build_service(config: Config, reactor) -> OctoluxService:
    """The whole bridge as one service; nothing connects until it is started."""
    for line in config.ignored:
        log.info("{line}", line=line)
    mqtt = None
    if config.mqtt is None:
        log.info("No [mqtt] uri in the configuration: MQTT is off")
    else:
        mqtt = MqttService(
            config.mqtt, reactor=reactor, status_topic=Topics(config.mqtt.prefix).status,
            inverters=len(config.inverters),
        )
    history = None
    if config.history is not None:
        history = HistoryService(reactor, open_stores(config.history))
    # One gate for the whole bridge: a fleet's holding registers, read on
    # connecting and published again on every broker connection, go as fast
    # as the broker takes them.
    pacer = Pacer(reactor) if mqtt is None else Pacer(reactor, backlog=mqtt.backlog)
    inverters = [
        _inverter(reactor, inverter_config, pacer) for inverter_config in config.inverters
    ]
    configs = dict(zip(inverters, config.inverters, strict=True))
    top = OctoluxService(mqtt, history)
    # Started in this order. The API first: if its port is taken, start-up
    # stops before anything connects. The history and MQTT before the
    # inverters, so the first inputs find them under way.
    page = top.page = Page(
        control=config.server.control,
        local_only=_is_loopback(config.server.listen_host),
        history=history,
        clock=reactor,
    )
    root = api_root(inverters, history=history, now=reactor.seconds, page=page, clock=reactor)
    ApiService(reactor, config.server, root).setServiceParent(top)
    if history is not None:
        history.setServiceParent(top)
    if mqtt is not None:
        mqtt.setServiceParent(top)
        commands = CommandRouter(mqtt.subscribe, config.mqtt.prefix)
        sweeper = None
        if config.homeassistant.enabled:
            sweeper = OrphanSweeper(mqtt, mqtt.subscribe, Topics(config.mqtt.prefix),
                                    config.homeassistant.prefix,
                                    keep_unknown=config.listener.accept_unknown)
            mqtt.subscribe(sweeper.records, sweeper.record_seen)

    runners: dict[Inverter, CommandRunner] = {}

    def attach(inverter: Inverter, named: bool) -> None:
        inverter.setServiceParent(top)
        if history is not None:
            recorder = history.recorder(inverter.name)
            inverter.add_observer(recorder)
            inverter.batteries.observers.append(recorder)
        # A dongle no section names (accept_unknown) has the defaults.
        options = configs.get(inverter, InverterConfig(inverter.name, None, None, None))
        if options.sync_time:
            keeper = ClockKeeper(inverter, clock=reactor)
            keeper.setServiceParent(top)
            inverter.add_observer(keeper)
        # The one way in for this inverter's commands: MQTT's and the page's.
        runner = runners[inverter] = CommandRunner(inverter,
                                                   any_register=options.set_hold_any_register)
        if mqtt is not None:
            topics = Topics(config.mqtt.prefix, inverter.name if named else None)
            bridge = InverterBridge(inverter, mqtt, topics, runner)
            inverter.add_observer(bridge)
            inverter.batteries.observers.append(bridge)
            commands.add(bridge)
            mqtt.add_connect_handler(_paced(pacer, inverter, bridge.broker_connected))
            if sweeper is not None:
                _home_assistant(mqtt, inverter, topics, sweeper, options.device_name,
                                _automated(config, inverter))
        # The first inverter's API is /api/... too; every one's is /api/<name>/...
        api_path = "/api" if inverter is inverters[0] else f"/api/{inverter.name}"
        live = LiveInverter(inverter, runner=runner, api_path=api_path, clock=reactor)
        inverter.add_observer(live)
        page.add(live)

    for inverter in inverters:
        attach(inverter, config.named_topics)
    on_rs485 = [(inverter, inverter_config.modbus)
                for inverter, inverter_config in configs.items() if inverter_config.modbus]
    for inverter, modbus_config in on_rs485:
        ModbusPoller(inverter, clock=reactor,
                     poll_interval=modbus_config.poll_interval).setServiceParent(top)
    for line in modbus_lines(reactor, on_rs485, connect_timeout=CONNECT_TIMEOUT):
        line.setServiceParent(top)
    for listener in _listeners(reactor, config, inverters, attach, pacer):
        listener.setServiceParent(top)
    if config.automation is not None:
        planner = automation(config, reactor, runners, mqtt, history)
        planner.setServiceParent(top)
        root.children[b"api"].putChild(b"plan", JsonResource(planner.plan_json))
    return top


def _automated(config: Config, inverter: Inverter) -> bool:
    """Does the battery automation drive ``inverter``?"""
    automation = config.automation
    return automation is not None and inverter.name == (
        automation.inverter or config.inverters[0].name)


def _home_assistant(mqtt, inverter, topics, sweeper: OrphanSweeper,
                    device_name: str | None, plan: bool = False) -> None:
    """Home Assistant discovery for one inverter: its configs kept on the broker."""
    prefix = sweeper.prefix
    discovery = HomeAssistantDiscovery(
        inverter, mqtt, topics, prefix, device_name, subscribe=mqtt.subscribe, sweeper=sweeper,
        plan=plan,
    )
    inverter.add_observer(discovery)
    mqtt.add_connect_handler(discovery.broker_connected)
    battery_discovery = BatteryDiscovery(inverter, mqtt, topics, prefix)
    inverter.batteries.observers.append(battery_discovery)
    mqtt.add_connect_handler(battery_discovery.broker_connected)
    mqtt.subscribe(discovery.status_topic, discovery.home_assistant_status)
    log.info("Home Assistant discovery for inverter {name} under {prefix}/",
             name=inverter.name, prefix=prefix)


def _paced(pacer: Pacer, inverter: Inverter, republish):
    """``republish`` (every register of ``inverter`` again) when the broker has room for it."""
    return lambda: pacer.run(len(inverter.registers), republish)


def _listeners(reactor, config: Config, inverters: list[Inverter], attach,
               pacer: Pacer) -> list[DongleListener]:
    """One ``DongleListener`` per distinct ``listen`` address, with the sections it serves."""
    routes: dict[tuple[str, int], list[Route]] = {}
    for inverter, inverter_config in zip(inverters, config.inverters, strict=True):
        if inverter_config.listen is not None:
            routes.setdefault(inverter_config.listen, []).append(
                Route(inverter, *_cloud(reactor, inverter_config.cloud))
            )
    listeners = []
    settings = config.listener
    accept_unknown = None
    if settings.accept_unknown:
        accept_unknown = _unknown_dongles(reactor, settings.cloud, attach, pacer)
    for (host, port), served in routes.items():
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        listeners.append(DongleListener(
            endpoint_type(reactor, port, interface=host),
            host_and_port(host, port),
            served,
            clock=reactor,
            max_connections=settings.max_connections,
            identify_timeout=settings.identify_timeout,
            accept_unknown=accept_unknown,
            accepted_relay=accept_unknown is not None and settings.cloud is not None,
        ))
    return listeners


def _cloud(reactor, cloud: tuple[str, int] | None):
    """(endpoint maker, "host:port") for a relay to the vendor's server, or (None, None)."""
    if cloud is None:
        return None, None
    host, port = cloud

    def endpoint():
        return HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)

    return endpoint, host_and_port(host, port)


def _unknown_dongles(reactor, cloud: tuple[str, int] | None, attach, pacer: Pacer):
    """``accept_unknown``: a dongle no section names gets an inverter named by its serial.

    Its topics are always named (``<prefix>/<serial>/...``) and it is everywhere
    a configured inverter is (``attach``: MQTT, Home Assistant, history, the
    API and the page). It has a section's defaults (``InverterConfig``: no-data
    and command timeouts, not read-only, no clock keeping), never another
    section's settings, and ``[listener] cloud`` as its relay.
    """
    defaults = InverterConfig("", None, None, None)

    def route_for(datalog: str) -> Route:
        inverter = Inverter(
            None, datalog, None, clock=reactor, no_data_timeout=defaults.no_data_timeout,
            command_timeout=defaults.command_timeout, name=datalog,
            read_only=defaults.read_only, read_holding_on_connect=True, pacer=pacer,
        )
        attach(inverter, True)
        return Route(inverter, *_cloud(reactor, cloud))

    return route_for


def _is_loopback(host: str) -> bool:
    """Is ``host`` (``[server] listen_host``) a loopback address or ``localhost``?"""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _inverter(reactor, config: InverterConfig, pacer: Pacer) -> Inverter:
    if config.read_only:
        log.info("Inverter {name}: read_only: every command that writes gets FAIL",
                 name=config.name)
    if config.listen is not None:
        host, port = config.listen
        log.info(
            "Inverter {name}: waiting for its datalogger on {address}{relay}, datalog {datalog},"
            " serial {serial}",
            name=config.name,
            address=host_and_port(host, port),
            relay=f" (relayed to {host_and_port(*config.cloud)})" if config.cloud else "",
            datalog=config.datalog or "(to learn)",
            serial=config.serial or "(to learn)",
        )
        # The listener hands the connections in, and answers heartbeats (or the
        # cloud does, through the relay): no endpoint, no echo.
        endpoint, address, heartbeat_echo = None, host_and_port(host, port), False
    elif config.modbus is not None:
        log.info("Inverter {name}: RS485 port at {address}, unit {unit}, inputs every"
                 " {interval:g} s, serial {serial}", name=config.name,
                 address=config.modbus.address, unit=config.modbus.unit,
                 interval=config.modbus.poll_interval, serial=config.serial or "(to learn)")
        # Its ModbusLine hands the connection in (see makeService). No dongle,
        # so no datalog serial: a stand-in. A ModbusPoller asks for the inputs.
        return Inverter(
            None, datalog_stand_in(config.modbus.unit), config.serial, clock=reactor,
            command_timeout=config.command_timeout, read_only=config.read_only,
            read_holding_on_connect=True, pacer=pacer, name=config.name,
            address=config.modbus.address)
    else:
        log.info(
            "Inverter {name}: datalogger {host}:{port}, datalog {datalog}, serial {serial}",
            name=config.name,
            host=config.host,
            port=config.port,
            datalog=config.datalog or "(to learn)",
            serial=config.serial or "(to learn)",
        )
        endpoint = HostnameEndpoint(reactor, config.host, config.port, timeout=CONNECT_TIMEOUT)
        address = f"{config.host}:{config.port}"
        heartbeat_echo = config.heartbeat_echo
    return Inverter(
        endpoint,
        config.datalog,
        config.serial,
        clock=reactor,
        heartbeat_echo=heartbeat_echo,
        no_data_timeout=config.no_data_timeout,
        command_timeout=config.command_timeout,
        read_only=config.read_only,
        read_holding_on_connect=True,
        pacer=pacer,
        name=config.name,
        address=address,
    )


def makeService(options: Options) -> service.IService:
    """twistd's entry point: the service tree for ``options.config``."""
    from twisted.internet import reactor

    built = build_service(options.config, reactor)
    # Everything made so far (the modules, the service tree) lives as long as
    # the process: out of the collector's sight, a full collection no longer
    # walks it. Walking it paused the reactor for 24 ms now and then, which
    # a command caught in it added to its round trip (bench/roundtrip.py).
    gc.freeze()
    return built
