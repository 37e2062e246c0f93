"""config.ini -> Config: the original tool's file, defaults, and one clear line per mistake."""

from __future__ import annotations

import string
import textwrap

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from octolux.config.ini import (
    COMMAND_TIMEOUT,
    NO_DATA_TIMEOUT,
    Config,
    ConfigError,
    InverterConfig,
    MqttConfig,
    ServerConfig,
    load_config,
    parse_config,
)

# The original tool's doc/config.ini.example, as users have it today.
ORIGINAL = """\
[lxp]
host = 192.168.3.240
port = 8000
serial = 0252016062
datalog = BA10330137

host_slave = 192.168.3.241
port_slave = 8000
serial_slave = 0252016063
datalog_slave = BA10330178

batteries = 2

# these can be obtained from your Octopus account;
[octopus]
product_code = AGILE-18-02-21
tariff_code = E-1R-AGILE-18-02-21-G

[server]
# used by server.rb to open a listening port.
# use 0.0.0.0 here to make the server available externally
listen_host = localhost
# used by octolux.rb to connect to server.rb
connect_host = localhost
port = 4346

[mqtt]
# see https://github.com/mqtt/mqtt.github.io/wiki/URI-Scheme for URI help
# you can leave this commented out if you don't want to use MQTT at all.
# uri = mqtt://nas:1883
# uri = mqtt://emonpi:emonpimqtt2016@emonpi:1883

[rules]
required_soc = 90
emergency_soc = 50
"""

LXP = "[lxp]\nhost = dongle\nserial = 0252016062\ndatalog = BA10330137\n"


def parse(text: str, extra: str = "") -> Config:
    return parse_config(text + textwrap.dedent(extra))


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_original_tools_file_works_unchanged():
    config = parse_config(ORIGINAL)
    assert config.inverters == (
        InverterConfig(
            name="inverter",
            host="192.168.3.240",
            port=8000,
            serial="0252016062",
            datalog="BA10330137",
        ),
    )
    assert config.server == ServerConfig(listen_host="localhost", port=4346)
    # [mqtt] with uri commented out, as the original example ships: no MQTT.
    assert config.mqtt is None
    assert config.log_level == "info"


def test_unused_sections_and_keys_are_listed_for_the_log():
    config = parse_config(ORIGINAL)
    ignored = config.ignored
    # [octopus], [rules] and [lxp] batteries are the automation's (tests/test_automation.py).
    assert not [line for line in ignored if "octopus" in line or "rules" in line]
    assert config.automation is not None and config.automation.planner is None
    assert "config.ini: [lxp] host_slave: not used by octolux, ignored" in ignored
    assert "config.ini: [server] connect_host: not used by octolux, ignored" in ignored


def test_defaults():
    config = parse(LXP)
    (inverter,) = config.inverters
    assert inverter.port == 8000
    assert inverter.heartbeat_echo is False
    assert inverter.no_data_timeout == NO_DATA_TIMEOUT == 900.0
    assert inverter.command_timeout == COMMAND_TIMEOUT == 10.0
    assert (inverter.read_only, inverter.sync_time, inverter.set_hold_any_register) == (
        False, False, False,
    )
    assert config.server == ServerConfig(listen_host="127.0.0.1", port=4346)
    assert config.mqtt is None
    assert config.log_level == "info"
    assert config.ignored == ()
    assert not config.named_topics


def test_every_new_setting_is_read():
    config = parse(LXP, """
        heartbeat_echo = yes
        no_data_timeout = 120
        command_timeout = 2.5
        sync_time = yes
        set_hold_any_register = on
        [lxp garage]
        host = 192.168.0.11
        serial = 0123456790
        datalog = BA12345679
        read_only = yes
        [server]
        listen_host = ::1
        port = 0
        [mqtt]
        uri = mqtt://broker
        prefix = home/octolux/
        client_id = octolux-test
        [log]
        level = DEBUG
    """)
    inverter, garage = config.inverters
    assert (inverter.heartbeat_echo, inverter.no_data_timeout, inverter.command_timeout) == (
        True, 120.0, 2.5,
    )
    assert (inverter.read_only, inverter.sync_time, inverter.set_hold_any_register) == (
        False, True, True,
    )
    assert (garage.read_only, garage.sync_time, garage.set_hold_any_register) == (
        True, False, False,
    )
    assert config.server == ServerConfig(listen_host="::1", port=0)
    assert config.mqtt.prefix == "home/octolux"
    assert config.mqtt.client_id == "octolux-test"
    assert config.log_level == "debug"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mqtt://broker", MqttConfig(host="broker", port=1883)),
        ("mqtt://broker:1884", MqttConfig(host="broker", port=1884)),
        ("mqtts://broker", MqttConfig(host="broker", port=8883, tls=True)),
        ("mqtts://broker:9999/", MqttConfig(host="broker", port=9999, tls=True)),
        (
            "mqtt://emonpi:emonpimqtt2016@emonpi:1883",
            MqttConfig(host="emonpi", port=1883, username="emonpi", password="emonpimqtt2016"),
        ),
        (
            "mqtts://us%40er:p%3Ass%2Fw%25rd@broker",
            MqttConfig(host="broker", port=8883, tls=True, username="us@er", password="p:ss/w%rd"),
        ),
        ("mqtt://user@broker", MqttConfig(host="broker", port=1883, username="user")),
        ("mqtt://[::1]:1883", MqttConfig(host="::1", port=1883)),
        ('"mqtt://broker"', MqttConfig(host="broker", port=1883)),
    ],
)
def test_mqtt_uri(uri, expected):
    assert parse(LXP + f"[mqtt]\nuri = {uri}\n").mqtt == expected


def test_the_password_stays_out_of_repr():
    config = parse(LXP + "[mqtt]\nuri = mqtt://user:s3cr3t-pw@broker\n")
    assert config.mqtt.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(config)
    assert config.mqtt.address == "broker:1883"


def test_an_ipv6_broker_address_is_bracketed():
    assert MqttConfig(host="::1", port=1883).address == "[::1]:1883"


def test_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    config = parse(LXP + f"[mqtt]\nuri = mqtts://broker\nca_file = {ca}\n")
    assert config.mqtt.ca_file == str(ca)
    plain = parse(LXP + f"[mqtt]\nuri = mqtt://broker\nca_file = {ca}\n")
    assert plain.mqtt.ca_file is None
    assert plain.ignored == ("config.ini: [mqtt] ca_file: uri is not mqtts://, ignored",)


def test_more_inverters_get_named_topics():
    config = parse(LXP, """
        name = main
        [lxp garage]
        host = 10.0.0.2
        serial = 0252016063
        datalog = BA10330178
    """)
    assert [i.name for i in config.inverters] == ["main", "garage"]
    assert config.named_topics


def test_load_config_reads_the_file(tmp_path):
    path = tmp_path / "octolux.ini"
    path.write_text(LXP)
    assert load_config(path).inverters[0].host == "dongle"


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.ini"
    with pytest.raises(ConfigError, match=r"nope\.ini: cannot read: No such file or directory"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 1\n", "config.ini: [lxp]: missing section"),
        ("[lxp]\nserial = 0252016062\ndatalog = BA10330137\n", "config.ini: [lxp] host: missing"),
        (LXP + "port = abc\n", "config.ini: [lxp] port: not a number: 'abc'"),
        (LXP + "port = 0\n", "config.ini: [lxp] port: not a port number (1-65535): '0'"),
        (LXP + "port = 70000\n", "config.ini: [lxp] port: not a port number (1-65535): '70000'"),
        (
            "[lxp]\nhost = h\nserial = 025201606\ndatalog = BA10330137\n",
            "config.ini: [lxp] serial: not 10 letters and digits: '025201606'",
        ),
        (
            "[lxp]\nhost = h\nserial = 0252016062\ndatalog = BA10330137X\n",
            "config.ini: [lxp] datalog: not 10 letters and digits: 'BA10330137X'",
        ),
        (LXP + "heartbeat_echo = maybe\n", "config.ini: [lxp] heartbeat_echo: not yes/no: 'maybe'"),
        (LXP + "read_only = perhaps\n", "config.ini: [lxp] read_only: not yes/no: 'perhaps'"),
        (LXP + "sync_time = daily\n", "config.ini: [lxp] sync_time: not yes/no: 'daily'"),
        (
            LXP + "set_hold_any_register = all\n",
            "config.ini: [lxp] set_hold_any_register: not yes/no: 'all'",
        ),
        (
            LXP + "read_only = yes\nsync_time = yes\n",
            "config.ini: [lxp] sync_time: cannot set the clock with read_only = yes: 'yes'",
        ),
        (
            LXP + "command_timeout = soon\n",
            "config.ini: [lxp] command_timeout: not a number of seconds: 'soon'",
        ),
        (
            LXP + "no_data_timeout = 0\n",
            "config.ini: [lxp] no_data_timeout: must be more than 0 seconds: '0'",
        ),
        (LXP + "[server]\nport = x\n", "config.ini: [server] port: not a number: 'x'"),
        (
            LXP + "[mqtt]\nuri = http://broker\n",
            "config.ini: [mqtt] uri: scheme must be mqtt:// or mqtts://: 'http://broker'",
        ),
        (LXP + "[mqtt]\nuri = mqtt://\n", "config.ini: [mqtt] uri: no host: 'mqtt://'"),
        (
            # "port" might be a password: 'mqtt://user:password' without its @host.
            LXP + "[mqtt]\nuri = mqtt://broker:port\n",
            "config.ini: [mqtt] uri: not a valid URI: 'mqtt://broker:***'",
        ),
        (
            LXP + "[mqtt]\nuri = mqtt://broker:0\n",
            "config.ini: [mqtt] uri: not a port number (1-65535): 'mqtt://broker:0'",
        ),
        (
            LXP + "[mqtt]\nuri = mqtt://broker:70000\n",
            "config.ini: [mqtt] uri: not a valid URI: 'mqtt://broker:70000'",
        ),
        (
            LXP + "[mqtt]\nuri = mqtt://broker/topic\n",
            "config.ini: [mqtt] uri: unexpected path or query after host:port: "
            "'mqtt://broker/topic'",
        ),
        (
            LXP + "[mqtt]\nuri = mqtt://b\nprefix = a/+/b\n",
            "config.ini: [mqtt] prefix: not a usable topic prefix: 'a/+/b'",
        ),
        (
            LXP + "[mqtt]\nuri = mqtts://b\nca_file = /no/such/ca.pem\n",
            "config.ini: [mqtt] ca_file: no such file: '/no/such/ca.pem'",
        ),
        (
            LXP + "[log]\nlevel = loud\n",
            "config.ini: [log] level: not one of debug, info, warn, error, critical: 'loud'",
        ),
        (
            LXP + "[lxp two words]\nhost = h\n",
            "config.ini: [lxp two words] name: letters, digits, '-' and '_' only: 'two words'",
        ),
        ("host = h\n[lxp]\n", "config.ini: line 1: a key before any [section]"),
        (LXP + "this line has no equals sign\n", "config.ini: line 5: not a 'key = value' line"),
    ],
)
def test_each_mistake_is_one_line_naming_file_section_and_key(text, message):
    assert error_of(text) == message


def test_a_bad_uri_is_shown_without_its_password():
    message = error_of(LXP + "[mqtt]\nuri = http://user:s3cr3t-pw@broker\n")
    assert "s3cr3t-pw" not in message
    assert message == (
        "config.ini: [mqtt] uri: scheme must be mqtt:// or mqtts://: 'http://***@broker'"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "user:s3cr3t-pw@broker:1883",
        "mqtt:/user:s3cr3t-pw@broker",
        "mqtt//user:s3cr3t-pw@broker",
        "mqtt:user:s3cr3t-pw@broker",
        "mqtt://user:s3cr3t-pw@",
        "mqtt://user:s3cr3t-pw@broker/path",
        "mqtt://user:s3cr3t-pw@broker:notaport",
        "mqtt://user:s3cr3t-pw",  # its @host forgotten
        "mqtts://:s3cr3t-pw",
        "mqtt://user:s3cr3t-pw/",
        "mqtt://[::1]:s3cr3t-pw",
        "mqtt://user:s3cr3t-pw@broker:0",
    ],
)
def test_no_malformed_uri_shows_its_password(uri):
    message = error_of(LXP + f"[mqtt]\nuri = {uri}\n")
    assert message.startswith("config.ini: [mqtt] uri: ")
    assert "s3cr3t-pw" not in message


# Shapes a URI with a password can take when someone gets it wrong; {pw} is the password.
_MALFORMED_SHAPES = [
    "{scheme}://user:{pw}",
    "{scheme}://user:{pw}@",
    "{scheme}://user:{pw}@host:port",
    "{scheme}://user:{pw}@host:0",
    "{scheme}://user:{pw}@host/path",
    "{scheme}://user:{pw}@host?q",
    "{scheme}:/user:{pw}@host",
    "{scheme}//user:{pw}@host",
    "{scheme}:user:{pw}@host",
    "{scheme}:user:{pw}",
    "{scheme}://:{pw}",
    "{scheme}://user:{pw}/",
    "{scheme}://[::1]:{pw}",
    "{scheme}://user:{pw}@[::1",
    "user:{pw}@host",
    "user:{pw}",
    "{scheme}://{pw}@",
]


def _message_or_nothing(uri: str) -> str:
    try:
        parse(LXP + f"[mqtt]\nuri = {uri}\n")
    except ConfigError as error:
        return str(error)
    return ""


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from(_MALFORMED_SHAPES),
    scheme=st.sampled_from(["mqtt", "mqtts", "http", "MQTT", "mqtt ", ""]),
    # Passwords with the characters that confuse URI parsing: @ : / ? # [ ] %.
    password=st.text(
        alphabet=string.ascii_letters + string.digits + "!$%&'()*+,;=-._~:/?#[]",
        min_size=6,
        max_size=20,
    ).filter(lambda pw: not pw.isdigit() and pw.strip() == pw),
)
def test_no_config_error_shows_a_password_however_malformed_the_uri(shape, scheme, password):
    uri = shape.format(scheme=scheme, pw=password)
    assume(uri.count(password) == 1)  # the password is not also some other part
    # Nor a word the message says anyway ("config", "valid"): what the message
    # says about the same URI with a password of other characters.
    other = shape.format(scheme=scheme, pw="\N{SECTION SIGN}" * 8)
    assume(password not in _message_or_nothing(other))
    try:
        config = parse(LXP + f"[mqtt]\nuri = {uri}\n")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("config.ini: [mqtt] uri: ")
        assert password not in message
    else:  # a URI that happens to parse: the password is not in the repr either
        assert password not in repr(config)


@pytest.mark.parametrize("name", ["inputs", "registers"])
def test_an_inverter_may_not_take_a_name_the_api_uses(name):
    assert "a name the HTTP API uses itself" in error_of(LXP + f"[lxp {name}]\n" + LXP[6:])


def test_percent_signs_are_not_interpolated():
    config = parse(LXP + "[mqtt]\nuri = mqtt://u:100%25@broker\n")
    assert config.mqtt.password == "100%"
