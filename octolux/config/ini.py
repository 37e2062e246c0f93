"""``config.ini`` -> a frozen ``Config``, with one clear line for every mistake.

The file of the original tool works unchanged: ``[lxp]``, ``[server]`` and
``[mqtt]`` keep their keys and meaning; sections and keys this project does not
use are listed in ``Config.ignored`` for the caller to log. Every error is a
``ConfigError`` naming the file, the section and the key.

``_Ini`` reads typed values (ports, seconds, serials, ...) from the parsed
file; one function per section (``_inverter``, ``_listener``, ``_server``,
``_mqtt``, ``_history``, ...) builds that section's attrs class from them.
"""

from __future__ import annotations

import configparser
import importlib.util
import math
import os
import re
import urllib.parse

import attrs

from octolux.config.octopus import OCTOPUS_URL, tariff_code
from octolux.config.words import FALSE_WORDS, TRUE_WORDS
from octolux.lxp import frames

SERIAL_LENGTH = frames.SERIAL_LENGTH  # config.ini adds: letters and digits only
LXP_PORT = 8000
VENDOR_PORT = 4346  # where dongles dial the vendor's server: server mode's default
MAX_CONNECTIONS = 64  # a listener's: more dongles than one home network holds
# A dongle heartbeats about once a minute, and sends one as soon as it connects.
IDENTIFY_TIMEOUT = 90.0
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 4346
MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
MQTT_PREFIX = "octolux"
HEARTBEAT_ECHO = False
NO_DATA_TIMEOUT = 900.0  # peers use 15-20 minutes (PROTOCOL.md, section 8)
COMMAND_TIMEOUT = 10.0
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_LEVEL = "info"
DEFAULT_INVERTER_NAME = "inverter"
HOMEASSISTANT_PREFIX = "homeassistant"

# The keys this project reads, by section; any other key is logged as ignored.
_KNOWN_KEYS = {
    "lxp": {"host", "port", "serial", "datalog", "name", "device_name", "listen", "cloud",
            "heartbeat_echo", "no_data_timeout", "command_timeout",
            "read_only", "sync_time", "set_hold_any_register", "batteries", "modbus", "unit",
            "poll_interval"},
    "server": {"listen_host", "host", "port", "control"},
    "mqtt": {"uri", "prefix", "ca_file", "client_id"},
    "log": {"level"},
    "homeassistant": {"enabled", "prefix"},
    "history": {"enabled", "path", "uri", "retention", "max_size"},
    "listener": {"max_connections", "identify_timeout", "accept_unknown", "cloud"},
    "octopus": {"product_code", "tariff_code", "export_tariff_code", "url", "cache"},
    "rules": {"enabled", "required_soc", "emergency_soc", "cheap_charge", "min_discharge",
              "read_only", "inverter", "battery_kwh"},
}
_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_RESERVED_NAMES = frozenset({"inputs", "registers", "history", "state", "events", "command"})
HISTORY_PATH = "octolux-history.sqlite"
PRICE_CACHE = "octolux-prices.json"
PLANNERS = ("original", "ours")
HISTORY_RETENTION_DAYS = 365.0
HISTORY_MAX_SIZE = 1 << 30  # bytes
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
POSTGRES_SCHEMES = ("postgresql", "postgres")


# The inverter's RS485 port (Modbus): its documented line settings, and how
# often to ask for its inputs (it broadcasts nothing; ESPHome's peers poll every 10 s).
MODBUS_SCHEMES = ("tcp", "rtu-over-tcp", "serial")
MODBUS_TCP_PORT = 502
MODBUS_BAUDRATE = 19200
MODBUS_UNIT = 1
POLL_INTERVAL = 10.0
MIN_POLL_INTERVAL = 1.0


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming file, section and key."""



def host_and_port(host: str, port: int) -> str:
    """``host:port`` for the log, an IPv6 address in brackets: ``[::1]:4346``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

@attrs.frozen
class InverterConfig:
    """One datalogger to connect to (or, with ``listen``, to wait for), and how patient to be.

    ``serial`` and ``datalog`` None: learned from the dongle's frames.
    """

    name: str
    host: str | None
    serial: str | None
    datalog: str | None
    port: int = LXP_PORT
    heartbeat_echo: bool = HEARTBEAT_ECHO
    no_data_timeout: float = NO_DATA_TIMEOUT
    command_timeout: float = COMMAND_TIMEOUT
    # Server mode: the dongle connects to us at this (host, port) instead of us to it.
    listen: tuple[str, int] | None = None
    # Relay, in server mode: the vendor's server (host, port) to pass the dongle's bytes to.
    cloud: tuple[str, int] | None = None
    read_only: bool = False  # refuse every write to this inverter
    sync_time: bool = False  # keep the inverter's clock on the bridge's local time
    set_hold_any_register: bool = False  # cmd/set_hold may write any register
    device_name: str | None = None  # its device's name in Home Assistant; None: a default
    # The inverter's own RS485 port instead of a dongle (then host is None).
    modbus: ModbusConfig | None = None


@attrs.frozen
class ModbusConfig:
    """The inverter's RS485 port: a Modbus TCP gateway, an RTU gateway, or a local serial port.

    ``scheme`` is ``tcp`` (MBAP framing), ``rtu-over-tcp`` (a gateway in
    transparent mode: RTU frames in a TCP stream) or ``serial`` (``path``,
    ``baudrate``, 8N1).
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    baudrate: int = MODBUS_BAUDRATE
    unit: int = MODBUS_UNIT
    poll_interval: float = POLL_INTERVAL

    @property
    def address(self) -> str:
        """Where the inverter is, for log lines: ``tcp://host:502``, ``serial:///dev/ttyUSB0``."""
        if self.scheme == "serial":
            return f"serial://{self.path}"
        return f"{self.scheme}://{host_and_port(self.host, self.port)}"


@attrs.frozen
class ListenerConfig:
    """How server mode's listeners guard their door (``[listener]``)."""

    max_connections: int = MAX_CONNECTIONS
    identify_timeout: float = IDENTIFY_TIMEOUT
    accept_unknown: bool = False
    # The relay of the dongles accept_unknown takes in (no section names them); None: none.
    cloud: tuple[str, int] | None = None


@attrs.frozen
class ServerConfig:
    """Where the HTTP API and the page listen (port 0: any free port); can the page command?"""

    listen_host: str = SERVER_HOST
    port: int = SERVER_PORT
    control: bool = False


@attrs.frozen
class HistoryConfig:
    """Where the history goes: an SQLite file (``path``), PostgreSQL (``uri``), or both."""

    path: str | None = HISTORY_PATH
    uri: str | None = attrs.field(default=None, repr=False)  # may hold a password
    retention: float = HISTORY_RETENTION_DAYS * 86400  # seconds; 0 keeps everything
    max_size: int = HISTORY_MAX_SIZE  # bytes of the SQLite file; 0: no limit


@attrs.frozen
class MqttConfig:
    """The broker, parsed from ``uri``; the password is left out of ``repr``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    prefix: str = MQTT_PREFIX
    ca_file: str | None = None
    client_id: str = ""

    @property
    def address(self) -> str:
        """``host:port``, the only way the broker may appear in a log line."""
        return host_and_port(self.host, self.port)


@attrs.frozen
class HomeAssistantConfig:
    """MQTT discovery for Home Assistant (``[homeassistant]``): off unless enabled."""

    enabled: bool = False
    prefix: str = HOMEASSISTANT_PREFIX


@attrs.frozen
class AutomationConfig:
    """Battery automation on Octopus prices (``[octopus]``, ``[rules]``, ``[lxp] batteries``).

    ``planner`` None: the sections are there but automation is not switched on
    (``[rules] enabled``); the bridge then only logs what it would do.
    """

    planner: str | None
    product: str
    tariff: str
    url: str = OCTOPUS_URL
    export_tariff: str | None = None  # E-1R-<product>-<region>: exports earn its prices
    cache: str = PRICE_CACHE
    batteries: int = 1
    battery_kwh: float | None = None  # None: 2.4 kWh per battery, as the original
    required_soc: float = 90.0
    emergency_soc: float = 50.0
    cheap_charge: float = 2.0
    min_discharge: float = 3.0
    read_only: bool = False  # plan and publish, write nothing
    inverter: str | None = None  # which inverter; None: the first


@attrs.frozen
class Config:
    """Everything ``twistd octolux`` needs to build its services."""

    inverters: tuple[InverterConfig, ...]
    server: ServerConfig = ServerConfig()
    mqtt: MqttConfig | None = None
    history: HistoryConfig | None = None  # None: no history (no [history] section)
    listener: ListenerConfig = ListenerConfig()
    log_level: str = LOG_LEVEL
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    automation: AutomationConfig | None = None  # None: no [octopus] section
    # One line per section or key that was read but is not used, for the log.
    ignored: tuple[str, ...] = ()

    @property
    def named_topics(self) -> bool:
        """Topics carry the inverter's name only when there is more than one inverter."""
        return len(self.inverters) > 1


def load_config(path: str | os.PathLike) -> Config:
    """Read and check the INI file at ``path``."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as e:
        raise ConfigError(f"{os.fspath(path)}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{os.fspath(path)}: not UTF-8 text") from None
    return parse_config(text, os.fspath(path))


def parse_config(text: str, filename: str = "config.ini") -> Config:
    """Check the INI ``text``; ``filename`` only names the file in error messages."""
    parser = configparser.ConfigParser(
        # '%' is common in passwords; the original tool did no interpolation.
        interpolation=None,
        # The original tool's INI reader let a repeated key win; so do we.
        strict=False,
        inline_comment_prefixes=("#", ";"),
        default_section="\0no default section",
    )
    try:
        parser.read_string(text, source=filename)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{filename}: line {e.lineno}: a key before any [section]") from None
    except configparser.ParsingError as e:
        lines = ", ".join(str(lineno) for lineno, _ in e.errors)
        raise ConfigError(f"{filename}: line {lines}: not a 'key = value' line") from None
    except configparser.Error as e:
        raise ConfigError(f"{filename}: {e.message.splitlines()[0]}") from None
    return _read(_Ini(parser, filename))


def _read(ini: _Ini) -> Config:
    """Every section of ``ini``, checked; then what was read but is not used, for the log."""
    inverters, sections = _inverters(ini)
    server = _server(ini)
    mqtt = _mqtt(ini)
    history = _history(ini)
    log_level = _log_level(ini)
    listener = _listener(ini)
    homeassistant = _homeassistant(ini, mqtt)
    automation = _automation(ini, inverters, sections)
    _check_api_clash(ini, inverters, sections, server)
    for section in ini.parser.sections():
        if section not in _KNOWN_KEYS and _lxp_name(section) is None:
            ini.ignored.append(f"{ini.filename}: [{section}]: not used by octolux, ignored")
    return Config(
        inverters=inverters,
        server=server,
        mqtt=mqtt,
        history=history,
        log_level=log_level,
        listener=listener,
        homeassistant=homeassistant,
        automation=automation,
        ignored=tuple(ini.ignored),
    )


@attrs.define
class _Ini:
    """One parsed ``config.ini``: its values as numbers, ports, serials, ...; each mistake a
    ``ConfigError`` naming the file, the section and the key; what is not used noted."""

    parser: configparser.ConfigParser
    filename: str
    ignored: list[str] = attrs.Factory(list)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        """The value with surrounding quotes removed (the original reader did that too)."""
        value = self.parser.get(section, key, fallback=None)
        if value is None:
            return default
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return value

    def required(self, section: str, key: str) -> str:
        """The value, which must be given."""
        value = self.get(section, key)
        if not value:
            raise ConfigError(f"{self.filename}: [{section}] {key}: missing")
        return value

    def port(self, section: str, key: str, default: int, *, allow_zero: bool = False) -> int:
        """A TCP port number (0 too with ``allow_zero``: any free port)."""
        value = self.get(section, key)
        if not value:
            return default
        number = self.integer(section, key, value)
        if not (0 if allow_zero else 1) <= number <= 65535:
            raise self.error(section, key, "not a port number (1-65535)", value)
        return number

    def topic_prefix(self, section: str, default: str) -> str:
        """``prefix``: an MQTT topic prefix without wildcards, leading or trailing ``/``."""
        prefix = self.get(section, "prefix", default).strip("/")
        if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
            raise self.error(section, "prefix", "not a usable topic prefix", prefix)
        return prefix

    def integer(self, section: str, key: str, value: str) -> int:
        """``value`` (of ``key``) as a decimal integer."""
        try:
            return int(value, 10)
        except ValueError:
            raise self.error(section, key, "not a number", value) from None

    def seconds(self, section: str, key: str, default: float) -> float:
        """A positive, finite number of seconds."""
        value = self.get(section, key)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(section, key, "not a number of seconds", value) from None
        if not 0 < number < float("inf"):
            raise self.error(section, key, "must be more than 0 seconds", value)
        return number

    def boolean(self, section: str, key: str, default: bool) -> bool:
        """yes/no, in any of the words ``octolux.config.words`` knows."""
        value = self.get(section, key)
        if not value:
            return default
        word = value.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise self.error(section, key, "not yes/no", value)

    def size(self, section: str, key: str, default: int) -> int:
        """Bytes: ``500M``, ``2G``, ``1048576`` (K, M, G, T are powers of 1024)."""
        value = self.get(section, key)
        if not value:
            return default
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", value.strip().lower())
        if match is None:
            raise self.error(section, key, "not a size (like 500M or 2G)", value)
        return int(float(match[1]) * _SIZE_UNITS[match[2]])

    def address(self, section: str, key: str, default_port: int) -> tuple[str, int] | None:
        """``HOST:PORT``, ``HOST`` (``default_port``) or ``[IPv6]:PORT``; None when not given."""
        value = self.get(section, key)
        if not value:
            return None
        if value.startswith("["):
            host, bracket, rest = value[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise self.error(section, key, "not HOST:PORT", value)
            port_text = rest[1:]
        elif value.count(":") == 1:
            host, _, port_text = value.partition(":")
        else:
            host, port_text = value, ""  # a bare IPv6 address, or a host name
        if not host:
            raise self.error(section, key, "no host (0.0.0.0 listens on all addresses)", value)
        if not port_text:
            return host, default_port
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise self.error(section, key, "not a port number (1-65535)", value)
        return host, int(port_text)

    def serial(self, section: str, key: str, *, optional: bool = False) -> str | None:
        """A dongle's or an inverter's serial: 10 letters and digits."""
        if optional and not self.get(section, key):
            return None
        value = self.required(section, key)
        if len(value) != SERIAL_LENGTH or not value.isascii() or not value.isalnum():
            raise self.error(section, key, f"not {SERIAL_LENGTH} letters and digits", value)
        return value

    def check_keys(self, section: str, known: set[str]) -> None:
        """Note every key of ``section`` that is not ``known`` as ignored."""
        for key in self.parser.options(section):
            if key not in known:
                self.note(section, key, "not used by octolux, ignored")

    def note(self, section: str, key: str, text: str) -> None:
        """Note ``key`` for the log: read but not used, and why."""
        self.ignored.append(f"{self.filename}: [{section}] {key}: {text}")

    def error(self, section: str, key: str, problem: str, value: str) -> ConfigError:
        """The error for ``value`` of ``key`` in ``section``, to raise."""
        return ConfigError(f"{self.filename}: [{section}] {key}: {problem}: {value!r}")


# -- the inverters and the listener ------------------------------------------------------


def _inverters(ini: _Ini) -> tuple[tuple[InverterConfig, ...], dict[str, str]]:
    """Every ``[lxp]`` / ``[lxp NAME]`` section; and inverter name -> its section."""
    sections = [s for s in ini.parser.sections() if _lxp_name(s) is not None]
    if not sections:
        raise ConfigError(f"{ini.filename}: [lxp]: missing section")
    inverters: list[InverterConfig] = []
    names: dict[str, str] = {}
    for section in sections:
        name = _lxp_name(section) or ini.get(section, "name", DEFAULT_INVERTER_NAME)
        if not _NAME.match(name):
            raise ini.error(section, "name", "letters, digits, '-' and '_' only", name)
        if name in _RESERVED_NAMES:
            # /api/<name>/... would hide the API's own /api/inputs, /api/registers.
            raise ini.error(section, "name", "a name the HTTP API uses itself", name)
        if name in names:
            raise ini.error(section, "name", "two inverters with this name", name)
        ini.check_keys(section, _KNOWN_KEYS["lxp"])
        names[name] = section
        inverters.append(_inverter(ini, section, name))
    _check_rs485_lines(ini, inverters, names)
    return tuple(inverters), names


def _check_rs485_lines(ini: _Ini, inverters, names: dict[str, str]) -> None:
    """Inverters on one RS485 line (one ``modbus`` address) need units and settings that fit."""
    seen: dict[str, InverterConfig] = {}
    for inverter in inverters:
        here = inverter.modbus
        if here is None:
            continue
        first = seen.setdefault(here.address, inverter)
        if first is inverter:
            continue
        section = names[inverter.name]
        if first.modbus.unit == here.unit:
            raise ini.error(section, "unit", f"{here.address} has unit {here.unit} in"
                            f" [{names[first.name]}] too: each inverter on a line has its own",
                            str(here.unit))
        if first.modbus.baudrate != here.baudrate:
            raise ini.error(section, "modbus", f"one line, one speed: [{names[first.name]}]"
                            " says otherwise", ini.get(section, "modbus"))


def _inverter(ini: _Ini, section: str, name: str) -> InverterConfig:
    """One inverter section: a dongle we dial (``host``) or one that dials us (``listen``)."""
    listen = ini.address(section, "listen", VENDOR_PORT)
    cloud = ini.address(section, "cloud", VENDOR_PORT)
    if listen is not None:
        if ini.get(section, "host"):
            raise ini.error(section, "listen", "not with host: give host (the bridge"
                            " dials the dongle) or listen (the dongle dials the"
                            " bridge)", ini.get(section, "listen"))
        for key in ("port", "heartbeat_echo"):
            if ini.get(section, key):
                ini.note(section, key, "not used with listen, ignored")
    elif cloud is not None:
        raise ini.error(section, "cloud", "only with listen (server mode)",
                        ini.get(section, "cloud"))
    modbus = _modbus(ini, section)
    if modbus is not None:
        for key in ("host", "listen"):
            if ini.get(section, key):
                raise ini.error(section, "modbus", f"not with {key}: the inverter is reached"
                                " through its RS485 port or a dongle, not both",
                                ini.get(section, "modbus"))
        for key in ("port", "heartbeat_echo", "datalog", "no_data_timeout"):
            if ini.get(section, key):
                ini.note(section, key, "not used with modbus, ignored")
    else:
        for key in ("unit", "poll_interval"):
            if ini.get(section, key):
                ini.note(section, key, "only used with modbus, ignored")
    if ini.boolean(section, "read_only", False) and ini.boolean(section, "sync_time", False):
        raise ini.error(section, "sync_time", "cannot set the clock with read_only = yes",
                        ini.get(section, "sync_time"))
    return InverterConfig(
        name=name,
        host=ini.required(section, "host") if listen is None and modbus is None else None,
        port=ini.port(section, "port", LXP_PORT),
        serial=ini.serial(section, "serial", optional=True),
        datalog=ini.serial(section, "datalog", optional=True),
        listen=listen,
        cloud=cloud,
        heartbeat_echo=ini.boolean(section, "heartbeat_echo", HEARTBEAT_ECHO),
        no_data_timeout=ini.seconds(section, "no_data_timeout", NO_DATA_TIMEOUT),
        command_timeout=ini.seconds(section, "command_timeout", COMMAND_TIMEOUT),
        read_only=ini.boolean(section, "read_only", False),
        sync_time=ini.boolean(section, "sync_time", False),
        set_hold_any_register=ini.boolean(section, "set_hold_any_register", False),
        device_name=ini.get(section, "device_name") or None,
        modbus=modbus,
    )


def _modbus(ini: _Ini, section: str) -> ModbusConfig | None:
    """``modbus = tcp://HOST[:PORT] | rtu-over-tcp://HOST:PORT | serial:///dev/X[?baudrate=N]``."""
    value = ini.get(section, "modbus")
    if not value:
        return None
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise ini.error(section, "modbus", "not a valid URI", value) from None
    if parts.scheme not in MODBUS_SCHEMES:
        raise ini.error(section, "modbus", "scheme must be tcp://, rtu-over-tcp:// or serial://",
                        value)
    unit_text = ini.get(section, "unit")
    unit = ini.integer(section, "unit", unit_text) if unit_text else MODBUS_UNIT
    if not 1 <= unit <= 247:
        raise ini.error(section, "unit", "a Modbus address is 1-247", unit_text)
    interval = ini.seconds(section, "poll_interval", POLL_INTERVAL)
    if interval < MIN_POLL_INTERVAL:
        raise ini.error(section, "poll_interval", f"at least {MIN_POLL_INTERVAL:g} s",
                        ini.get(section, "poll_interval"))
    common = {"scheme": parts.scheme, "unit": unit, "poll_interval": interval}
    if parts.scheme == "serial":
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if parts.netloc or not parts.path or set(query) - {"baudrate"}:
            raise ini.error(section, "modbus", "not serial:///DEVICE[?baudrate=N]", value)
        baudrate = query.get("baudrate", [str(MODBUS_BAUDRATE)])[-1]
        if not baudrate.isdigit() or not 1200 <= int(baudrate) <= 921600:
            raise ini.error(section, "modbus", "baudrate must be 1200-921600", value)
        return ModbusConfig(path=parts.path, baudrate=int(baudrate), **common)
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ini.error(section, "modbus", f"not {parts.scheme}://HOST:PORT", value)
    if port == 0 or (port is None and parts.scheme == "rtu-over-tcp"):
        raise ini.error(section, "modbus", "needs a port number (1-65535)", value)
    return ModbusConfig(host=parts.hostname, port=port or MODBUS_TCP_PORT, **common)


def _listener(ini: _Ini) -> ListenerConfig:
    """``[listener]``: how server mode guards its door."""
    if not ini.parser.has_section("listener"):
        return ListenerConfig()
    ini.check_keys("listener", _KNOWN_KEYS["listener"])
    value = ini.get("listener", "max_connections")
    maximum = MAX_CONNECTIONS
    if value:
        maximum = ini.integer("listener", "max_connections", value)
        if maximum < 1:
            raise ini.error("listener", "max_connections", "must be at least 1", value)
    return ListenerConfig(
        max_connections=maximum,
        identify_timeout=ini.seconds("listener", "identify_timeout", IDENTIFY_TIMEOUT),
        accept_unknown=ini.boolean("listener", "accept_unknown", False),
        cloud=ini.address("listener", "cloud", VENDOR_PORT),
    )


def _check_api_clash(ini: _Ini, inverters, sections: dict[str, str],
                     server: ServerConfig) -> None:
    """A listener on the HTTP API's port (4346 is both defaults) is one clear line."""
    wildcards = {"", "0.0.0.0", "::"}
    for inverter in inverters:
        if inverter.listen is None or server.port == 0:
            continue
        host, port = inverter.listen
        same_host = host == server.listen_host or {host, server.listen_host} & wildcards
        if port == server.port and same_host:
            raise ConfigError(
                f"{ini.filename}: [{sections[inverter.name]}] listen: port {port} is also the"
                f" HTTP API's ([server] port = {server.port}, its default): move the API, e.g."
                f" [server] port = 8080"
            )


# -- the outputs: HTTP API, MQTT, history, Home Assistant; the log -------------------------


def _server(ini: _Ini) -> ServerConfig:
    """``[server]``: where the HTTP API listens."""
    if not ini.parser.has_section("server"):
        return ServerConfig()
    ini.check_keys("server", _KNOWN_KEYS["server"])
    # The original server read listen_host, falling back to host.
    host = ini.get("server", "listen_host") or ini.get("server", "host") or SERVER_HOST
    return ServerConfig(
        listen_host=host,
        port=ini.port("server", "port", SERVER_PORT, allow_zero=True),
        control=ini.boolean("server", "control", False),
    )


def _mqtt(ini: _Ini) -> MqttConfig | None:
    """``[mqtt]``: the broker; None without a ``uri``."""
    if not ini.parser.has_section("mqtt"):
        return None
    ini.check_keys("mqtt", _KNOWN_KEYS["mqtt"])
    uri = ini.get("mqtt", "uri")
    if not uri:
        # The original example ships [mqtt] with uri commented out: MQTT off.
        for key in ("prefix", "ca_file", "client_id"):
            if ini.get("mqtt", key) is not None:
                ini.note("mqtt", key, "no uri, so no MQTT")
        return None
    mqtt = _mqtt_uri(ini, uri)
    prefix = ini.topic_prefix("mqtt", MQTT_PREFIX)
    ca_file = ini.get("mqtt", "ca_file")
    if ca_file is not None:
        if not mqtt.tls:
            ini.note("mqtt", "ca_file", "uri is not mqtts://, ignored")
            ca_file = None
        elif not os.path.isfile(ca_file):
            raise ini.error("mqtt", "ca_file", "no such file", ca_file)
    return attrs.evolve(
        mqtt, prefix=prefix, ca_file=ca_file, client_id=ini.get("mqtt", "client_id", "")
    )


def _mqtt_uri(ini: _Ini, uri: str) -> MqttConfig:
    """``mqtt[s]://[user[:password]@]host[:port]``."""
    # Messages quote the URI with its password masked: errors end up in logs.
    shown = mask_password(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError:
        raise ini.error("mqtt", "uri", "not a valid URI", shown) from None
    if parts.scheme not in MQTT_PORTS:
        raise ini.error("mqtt", "uri", "scheme must be mqtt:// or mqtts://", shown)
    if not parts.hostname:
        raise ini.error("mqtt", "uri", "no host", shown)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ini.error("mqtt", "uri", "unexpected path or query after host:port", shown)
    if port == 0:
        # Not "the default port", as urlsplit's falsy 0 would make it; it
        # refuses the other numbers outside 1-65535 itself.
        raise ini.error("mqtt", "uri", "not a port number (1-65535)", shown)
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return MqttConfig(
        host=parts.hostname,
        port=MQTT_PORTS[parts.scheme] if port is None else port,
        tls=parts.scheme == "mqtts",
        username=username or None,
        password=password,
    )


def _history(ini: _Ini) -> HistoryConfig | None:
    """``[history]``: an SQLite file, PostgreSQL, or both; None: no history."""
    # A config.ini of the original tool has no [history]: it records nothing.
    if not ini.parser.has_section("history"):
        return None
    ini.check_keys("history", _KNOWN_KEYS["history"])
    if not ini.boolean("history", "enabled", True):
        return None
    uri = ini.get("history", "uri") or None
    if uri is not None:
        _check_postgres_uri(ini, uri)
    path = ini.get("history", "path")
    if path is None:
        # No path: SQLite only when there is no PostgreSQL to write to.
        path = None if uri is not None else HISTORY_PATH
    elif not path:
        path = None  # "path =": explicitly no SQLite file
    if path is not None:
        # Relative to the configuration file, so a service finds the same file
        # whatever its working directory.
        path = os.path.join(os.path.dirname(ini.filename), os.path.expanduser(path))
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ini.error("history", "path", "its directory does not exist", path)
    if path is None and uri is None:
        raise ConfigError(f"{ini.filename}: [history] path: empty, and no uri either")
    retention = ini.get("history", "retention")
    days = HISTORY_RETENTION_DAYS
    if retention:
        try:
            days = float(retention)
        except ValueError:
            days = -1.0
        if not 0 <= days < float("inf"):
            raise ini.error("history", "retention", "not a number of days (0: keep all)",
                            retention)
    return HistoryConfig(
        path=path,
        uri=uri,
        retention=days * 86400,
        max_size=ini.size("history", "max_size", HISTORY_MAX_SIZE),
    )


def _check_postgres_uri(ini: _Ini, uri: str) -> None:
    shown = mask_postgres_uri(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ini.error("history", "uri", "not a valid URI", shown) from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ini.error("history", "uri", "scheme must be postgresql://", shown)
    if importlib.util.find_spec("psycopg") is None:
        raise ini.error(
            "history", "uri",
            "PostgreSQL needs psycopg: pip install 'octolux[postgresql]'", shown,
        )


def _homeassistant(ini: _Ini, mqtt: MqttConfig | None) -> HomeAssistantConfig:
    """``[homeassistant]``: MQTT discovery, only with MQTT."""
    if not ini.parser.has_section("homeassistant"):
        return HomeAssistantConfig()
    ini.check_keys("homeassistant", _KNOWN_KEYS["homeassistant"])
    enabled = ini.boolean("homeassistant", "enabled", False)
    if enabled and mqtt is None:
        # As for [mqtt] prefix without a uri: the example enables both halves.
        ini.note("homeassistant", "enabled", "no [mqtt] uri, so no discovery")
        enabled = False
    return HomeAssistantConfig(
        enabled=enabled, prefix=ini.topic_prefix("homeassistant", HOMEASSISTANT_PREFIX)
    )


def _automation(ini: _Ini, inverters, sections: dict[str, str]) -> AutomationConfig | None:
    """``[octopus]`` and ``[rules]``, the original tool's keys, and ``[lxp] batteries``."""
    has_rules = ini.parser.has_section("rules")
    if has_rules:
        ini.check_keys("rules", _KNOWN_KEYS["rules"])
    if not ini.parser.has_section("octopus"):
        if has_rules:
            ini.ignored.append(f"{ini.filename}: [rules]: no [octopus] section, so no prices:"
                               " no automation")
        return None
    ini.check_keys("octopus", _KNOWN_KEYS["octopus"])
    tariff_text = ini.required("octopus", "tariff_code")
    try:
        product, tariff = tariff_code(ini.get("octopus", "product_code") or None, tariff_text)
    except ValueError as error:
        raise ini.error("octopus", "tariff_code", str(error), tariff_text) from None
    export_tariff = ini.get("octopus", "export_tariff_code") or None
    if export_tariff is not None:
        try:
            export_tariff = tariff_code(None, export_tariff)[1]
        except ValueError as error:
            raise ini.error("octopus", "export_tariff_code", str(error), export_tariff) from None
    url = ini.get("octopus", "url") or OCTOPUS_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ini.error("octopus", "url", "not an http:// or https:// address", url)
    # Relative to the configuration file, as [history] path.
    cache = os.path.join(os.path.dirname(ini.filename),
                         os.path.expanduser(ini.get("octopus", "cache") or PRICE_CACHE))
    if not os.path.isdir(os.path.dirname(os.path.abspath(cache))):
        raise ini.error("octopus", "cache", "its directory does not exist", cache)
    enabled = (ini.get("rules", "enabled") if has_rules else None) or "no"
    if enabled.lower() in PLANNERS:
        planner = enabled.lower()
    elif enabled.lower() in TRUE_WORDS:
        planner = "ours"
    elif enabled.lower() in FALSE_WORDS:
        planner = None
    else:
        raise ini.error("rules", "enabled", "not yes/no, original or ours", enabled)
    inverter = (ini.get("rules", "inverter") if has_rules else None) or None
    names = [config.name for config in inverters]
    if inverter is not None and inverter not in names:
        raise ini.error("rules", "inverter", "no inverter of this name", inverter)
    section = sections[inverter or names[0]]
    batteries = 1
    text = ini.get(section, "batteries")
    if text:
        batteries = ini.integer(section, "batteries", text)
        if not 1 <= batteries <= 64:
            raise ini.error(section, "batteries", "must be 1-64", text)

    def number(key: str, default: float, low: float, high: float) -> float:
        text = ini.get("rules", key) if has_rules else None  # no [rules]: every default
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise ini.error("rules", key, f"not a number {low:g}-{high:g}", text)
        return value

    return AutomationConfig(
        planner=planner, product=product, tariff=tariff, url=url, export_tariff=export_tariff,
        cache=cache, batteries=batteries,
        battery_kwh=number("battery_kwh", 0.0, 0.1, 1000.0) or None,
        required_soc=number("required_soc", 90.0, 0.0, 100.0),
        emergency_soc=number("emergency_soc", 50.0, 0.0, 100.0),
        cheap_charge=number("cheap_charge", 2.0, -1000.0, 1000.0),
        min_discharge=number("min_discharge", 3.0, -1000.0, 1000.0),
        read_only=ini.boolean("rules", "read_only", False) if has_rules else False,
        inverter=inverter,
    )


def _log_level(ini: _Ini) -> str:
    """``[log] level``."""
    if not ini.parser.has_section("log"):
        return LOG_LEVEL
    ini.check_keys("log", _KNOWN_KEYS["log"])
    level = ini.get("log", "level", LOG_LEVEL).lower()
    level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raise ini.error("log", "level", f"not one of {', '.join(LOG_LEVELS)}", level)
    return level


def _lxp_name(section: str) -> str | None:
    """'' for ``[lxp]``, the name for ``[lxp NAME]``, None for any other section."""
    if section == "lxp":
        return ""
    if section.startswith("lxp "):
        return section[4:].strip() or None
    return None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
_PORT = re.compile(r"[0-9]*/?\Z")


def mask_password(uri: str) -> str:
    """``uri`` with whatever may be a password replaced by ``***``.

    Malformed URIs are exactly the ones that end up in error messages, so this
    assumes nothing of their shape: whatever stands before the last ``@`` may
    hold a password (``user:pw@host``, ``mqtt:/user:pw@host``, ...). Without an
    ``@``, so may whatever follows a ``:`` after the host, unless it is a port
    number (``mqtt://user:pw`` with its ``@host`` forgotten). Only a well-formed
    scheme is shown as it is.
    """
    scheme, separator, rest = uri.partition("://")
    if not separator or not _SCHEME.match(scheme):
        scheme, separator, rest = "", "", uri
    userinfo, at, address = rest.rpartition("@")
    if at:
        return f"{scheme}{separator}***@{address}"
    host = ""
    if address.startswith("[") and "]" in address:  # an IPv6 address has colons of its own
        host, bracket, address = address.partition("]")
        host += bracket
    more_host, colon, tail = address.partition(":")
    if colon and not _PORT.match(tail):
        tail = "***"
    return f"{scheme}{separator}{host}{more_host}{colon}{tail}"


def mask_postgres_uri(uri: str) -> str:
    """A PostgreSQL URI for the log: the password masked, also as a ``password=`` parameter."""
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", mask_password(uri))
