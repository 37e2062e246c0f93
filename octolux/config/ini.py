"""``config.ini`` -> a frozen ``Config``, with one clear line for every mistake.

The file of the original tool works unchanged: ``[lxp]``, ``[server]`` and
``[mqtt]`` keep their keys and meaning; sections and keys this project does not
use are listed in ``Config.ignored`` for the caller to log. Every error is a
``ConfigError`` naming the file, the section and the key.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import urllib.parse

import attrs

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
            "read_only", "sync_time", "set_hold_any_register"},
    "server": {"listen_host", "host", "port", "control"},
    "mqtt": {"uri", "prefix", "ca_file", "client_id"},
    "log": {"level"},
    "homeassistant": {"enabled", "prefix"},
    "history": {"enabled", "path", "uri", "retention", "max_size"},
    "listener": {"max_connections", "identify_timeout", "accept_unknown", "cloud"},
}
_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_RESERVED_NAMES = frozenset({"inputs", "registers", "history", "state", "events", "command"})
HISTORY_PATH = "octolux-history.sqlite"
HISTORY_RETENTION_DAYS = 365.0
HISTORY_MAX_SIZE = 1 << 30  # bytes
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
POSTGRES_SCHEMES = ("postgresql", "postgres")


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming file, section and key."""


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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class HomeAssistantConfig:
    """MQTT discovery for Home Assistant (``[homeassistant]``): off unless enabled."""

    enabled: bool = False
    prefix: str = HOMEASSISTANT_PREFIX


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
    return _Reader(parser, filename).config()


@attrs.define
class _Reader:
    """Turns the parsed INI into a ``Config``, remembering what it did not use."""

    parser: configparser.ConfigParser
    filename: str
    ignored: list[str] = attrs.Factory(list)
    sections: dict[str, str] = attrs.Factory(dict)  # inverter name -> its section

    def config(self) -> Config:
        inverters = self.inverters()
        server = self.server()
        mqtt = self.mqtt()
        history = self.history()
        log_level = self.log_level()
        listener = self.listener()
        homeassistant = self.homeassistant(mqtt)
        self.check_api_clash(inverters, server)
        for section in self.parser.sections():
            if section not in _KNOWN_KEYS and _lxp_name(section) is None:
                self.ignored.append(f"{self.filename}: [{section}]: not used by octolux, ignored")
        return Config(
            inverters=inverters,
            server=server,
            mqtt=mqtt,
            history=history,
            log_level=log_level,
            listener=listener,
            homeassistant=homeassistant,
            ignored=tuple(self.ignored),
        )

    # -- sections -------------------------------------------------------------

    def inverters(self) -> tuple[InverterConfig, ...]:
        sections = [s for s in self.parser.sections() if _lxp_name(s) is not None]
        if not sections:
            raise ConfigError(f"{self.filename}: [lxp]: missing section")
        inverters = []
        for section in sections:
            name = _lxp_name(section) or self.get(section, "name", DEFAULT_INVERTER_NAME)
            if not _NAME.match(name):
                raise self.error(section, "name", "letters, digits, '-' and '_' only", name)
            if name in _RESERVED_NAMES:
                # /api/<name>/... would hide the API's own /api/inputs, /api/registers.
                raise self.error(section, "name", "a name the HTTP API uses itself", name)
            if any(inverter.name == name for inverter in inverters):
                raise self.error(section, "name", "two inverters with this name", name)
            self.check_keys(section, _KNOWN_KEYS["lxp"])
            self.sections[name] = section
            listen = self.address(section, "listen", VENDOR_PORT)
            cloud = self.address(section, "cloud", VENDOR_PORT)
            if listen is not None:
                if self.get(section, "host"):
                    raise self.error(section, "listen", "not with host: give host (the bridge"
                                     " dials the dongle) or listen (the dongle dials the"
                                     " bridge)", self.get(section, "listen"))
                for key in ("port", "heartbeat_echo"):
                    if self.get(section, key):
                        self.note(section, key, "not used with listen, ignored")
            elif cloud is not None:
                raise self.error(section, "cloud", "only with listen (server mode)",
                                 self.get(section, "cloud"))
            if self.boolean(section, "read_only", False) and self.boolean(
                section, "sync_time", False
            ):
                raise self.error(section, "sync_time", "cannot set the clock with read_only = yes",
                                 self.get(section, "sync_time"))
            inverters.append(InverterConfig(
                name=name,
                host=self.required(section, "host") if listen is None else None,
                port=self.port(section, "port", LXP_PORT),
                serial=self.serial(section, "serial", optional=True),
                datalog=self.serial(section, "datalog", optional=True),
                listen=listen,
                cloud=cloud,
                heartbeat_echo=self.boolean(section, "heartbeat_echo", HEARTBEAT_ECHO),
                no_data_timeout=self.seconds(section, "no_data_timeout", NO_DATA_TIMEOUT),
                command_timeout=self.seconds(section, "command_timeout", COMMAND_TIMEOUT),
                read_only=self.boolean(section, "read_only", False),
                sync_time=self.boolean(section, "sync_time", False),
                set_hold_any_register=self.boolean(section, "set_hold_any_register", False),
                device_name=self.get(section, "device_name") or None,
            ))
        return tuple(inverters)

    def listener(self) -> ListenerConfig:
        if not self.parser.has_section("listener"):
            return ListenerConfig()
        self.check_keys("listener", _KNOWN_KEYS["listener"])
        value = self.get("listener", "max_connections")
        maximum = MAX_CONNECTIONS
        if value:
            maximum = self.integer("listener", "max_connections", value)
            if maximum < 1:
                raise self.error("listener", "max_connections", "must be at least 1", value)
        return ListenerConfig(
            max_connections=maximum,
            identify_timeout=self.seconds("listener", "identify_timeout", IDENTIFY_TIMEOUT),
            accept_unknown=self.boolean("listener", "accept_unknown", False),
            cloud=self.address("listener", "cloud", VENDOR_PORT),
        )

    def check_api_clash(self, inverters, server: ServerConfig) -> None:
        """A listener on the HTTP API's port (4346 is both defaults) is one clear line."""
        wildcards = {"", "0.0.0.0", "::"}
        for inverter in inverters:
            if inverter.listen is None or server.port == 0:
                continue
            host, port = inverter.listen
            same_host = host == server.listen_host or {host, server.listen_host} & wildcards
            if port == server.port and same_host:
                section = self.sections[inverter.name]
                raise ConfigError(
                    f"{self.filename}: [{section}] listen: port {port} is also the HTTP API's"
                    f" ([server] port = {server.port}, its default): move the API, e.g."
                    f" [server] port = 8080"
                )

    def server(self) -> ServerConfig:
        if not self.parser.has_section("server"):
            return ServerConfig()
        self.check_keys("server", _KNOWN_KEYS["server"])
        # The original server read listen_host, falling back to host.
        host = self.get("server", "listen_host") or self.get("server", "host") or SERVER_HOST
        return ServerConfig(
            listen_host=host,
            port=self.port("server", "port", SERVER_PORT, allow_zero=True),
            control=self.boolean("server", "control", False),
        )

    def mqtt(self) -> MqttConfig | None:
        if not self.parser.has_section("mqtt"):
            return None
        self.check_keys("mqtt", _KNOWN_KEYS["mqtt"])
        uri = self.get("mqtt", "uri")
        if not uri:
            # The original example ships [mqtt] with uri commented out: MQTT off.
            for key in ("prefix", "ca_file", "client_id"):
                if self.get("mqtt", key) is not None:
                    self.note("mqtt", key, "no uri, so no MQTT")
            return None
        mqtt = self.parse_uri(uri)
        prefix = self.topic_prefix("mqtt", MQTT_PREFIX)
        ca_file = self.get("mqtt", "ca_file")
        if ca_file is not None:
            if not mqtt.tls:
                self.note("mqtt", "ca_file", "uri is not mqtts://, ignored")
                ca_file = None
            elif not os.path.isfile(ca_file):
                raise self.error("mqtt", "ca_file", "no such file", ca_file)
        return attrs.evolve(
            mqtt, prefix=prefix, ca_file=ca_file, client_id=self.get("mqtt", "client_id", "")
        )

    def history(self) -> HistoryConfig | None:
        # A config.ini of the original tool has no [history]: it records nothing.
        if not self.parser.has_section("history"):
            return None
        self.check_keys("history", _KNOWN_KEYS["history"])
        if not self.boolean("history", "enabled", True):
            return None
        uri = self.get("history", "uri") or None
        if uri is not None:
            self.check_postgres_uri(uri)
        path = self.get("history", "path")
        if path is None:
            # No path: SQLite only when there is no PostgreSQL to write to.
            path = None if uri is not None else HISTORY_PATH
        elif not path:
            path = None  # "path =": explicitly no SQLite file
        if path is not None:
            # Relative to the configuration file, so a service finds the same file
            # whatever its working directory.
            path = os.path.join(os.path.dirname(self.filename), os.path.expanduser(path))
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise self.error("history", "path", "its directory does not exist", path)
        if path is None and uri is None:
            raise ConfigError(f"{self.filename}: [history] path: empty, and no uri either")
        retention = self.get("history", "retention")
        days = HISTORY_RETENTION_DAYS
        if retention:
            try:
                days = float(retention)
            except ValueError:
                days = -1.0
            if not 0 <= days < float("inf"):
                raise self.error("history", "retention", "not a number of days (0: keep all)",
                                 retention)
        return HistoryConfig(
            path=path,
            uri=uri,
            retention=days * 86400,
            max_size=self.size("history", "max_size", HISTORY_MAX_SIZE),
        )

    def homeassistant(self, mqtt: MqttConfig | None) -> HomeAssistantConfig:
        if not self.parser.has_section("homeassistant"):
            return HomeAssistantConfig()
        self.check_keys("homeassistant", _KNOWN_KEYS["homeassistant"])
        enabled = self.boolean("homeassistant", "enabled", False)
        if enabled and mqtt is None:
            # As for [mqtt] prefix without a uri: the example enables both halves.
            self.note("homeassistant", "enabled", "no [mqtt] uri, so no discovery")
            enabled = False
        return HomeAssistantConfig(
            enabled=enabled, prefix=self.topic_prefix("homeassistant", HOMEASSISTANT_PREFIX)
        )

    def log_level(self) -> str:
        if not self.parser.has_section("log"):
            return LOG_LEVEL
        self.check_keys("log", _KNOWN_KEYS["log"])
        level = self.get("log", "level", LOG_LEVEL).lower()
        level = "warn" if level == "warning" else level
        if level not in LOG_LEVELS:
            raise self.error("log", "level", f"not one of {', '.join(LOG_LEVELS)}", level)
        return level

    # -- values ---------------------------------------------------------------

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
        value = self.get(section, key)
        if not value:
            raise ConfigError(f"{self.filename}: [{section}] {key}: missing")
        return value

    def port(self, section: str, key: str, default: int, *, allow_zero: bool = False) -> int:
        value = self.get(section, key)
        if not value:
            return default
        number = self.integer(section, key, value)
        if not (0 if allow_zero else 1) <= number <= 65535:
            raise self.error(section, key, "not a port number (1-65535)", value)
        return number

    def topic_prefix(self, section: str, default: str) -> str:
        prefix = self.get(section, "prefix", default).strip("/")
        if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
            raise self.error(section, "prefix", "not a usable topic prefix", prefix)
        return prefix

    def integer(self, section: str, key: str, value: str) -> int:
        try:
            return int(value, 10)
        except ValueError:
            raise self.error(section, key, "not a number", value) from None

    def seconds(self, section: str, key: str, default: float) -> float:
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

    def check_postgres_uri(self, uri: str) -> None:
        shown = mask_postgres_uri(uri)
        try:
            parts = urllib.parse.urlsplit(uri)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            raise self.error("history", "uri", "not a valid URI", shown) from None
        if parts.scheme not in POSTGRES_SCHEMES:
            raise self.error("history", "uri", "scheme must be postgresql://", shown)
        if importlib.util.find_spec("psycopg") is None:
            raise self.error(
                "history", "uri",
                "PostgreSQL needs psycopg: pip install 'octolux[postgresql]'", shown,
            )

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
        if optional and not self.get(section, key):
            return None
        value = self.required(section, key)
        if len(value) != SERIAL_LENGTH or not value.isascii() or not value.isalnum():
            raise self.error(section, key, f"not {SERIAL_LENGTH} letters and digits", value)
        return value

    def parse_uri(self, uri: str) -> MqttConfig:
        # Messages quote the URI with its password masked: errors end up in logs.
        shown = mask_password(uri)
        try:
            parts = urllib.parse.urlsplit(uri)
            port = parts.port
        except ValueError:
            raise self.error("mqtt", "uri", "not a valid URI", shown) from None
        if parts.scheme not in MQTT_PORTS:
            raise self.error("mqtt", "uri", "scheme must be mqtt:// or mqtts://", shown)
        if not parts.hostname:
            raise self.error("mqtt", "uri", "no host", shown)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise self.error("mqtt", "uri", "unexpected path or query after host:port", shown)
        if port == 0:
            # Not "the default port", as urlsplit's falsy 0 would make it; it
            # refuses the other numbers outside 1-65535 itself.
            raise self.error("mqtt", "uri", "not a port number (1-65535)", shown)
        username = urllib.parse.unquote(parts.username) if parts.username is not None else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        return MqttConfig(
            host=parts.hostname,
            port=MQTT_PORTS[parts.scheme] if port is None else port,
            tls=parts.scheme == "mqtts",
            username=username or None,
            password=password,
        )

    def check_keys(self, section: str, known: set[str]) -> None:
        for key in self.parser.options(section):
            if key not in known:
                self.note(section, key, "not used by octolux, ignored")

    def note(self, section: str, key: str, text: str) -> None:
        self.ignored.append(f"{self.filename}: [{section}] {key}: {text}")

    def error(self, section: str, key: str, problem: str, value: str) -> ConfigError:
        return ConfigError(f"{self.filename}: [{section}] {key}: {problem}: {value!r}")


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
