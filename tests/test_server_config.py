"""config.ini for server mode: listen, cloud, [listener], optional serials, the API port clash."""

from __future__ import annotations

import pytest

from octolux.config.ini import ConfigError, ListenerConfig, parse_config


def test_listen_replaces_host_and_defaults_to_the_vendor_port():
    config = parse_config("[lxp]\nlisten = 0.0.0.0\n[server]\nport = 8080\n")
    (inverter,) = config.inverters
    assert inverter.listen == ("0.0.0.0", 4346) and inverter.host is None
    assert inverter.serial is None and inverter.datalog is None
    assert inverter.cloud is None and config.listener == ListenerConfig()


def test_listen_with_a_port_a_cloud_and_the_listener_settings():
    config = parse_config(
        "[lxp]\nlisten = [::1]:5000\ncloud = cloud.example\ndatalog = BA12345678\n"
        "[lxp two]\nlisten = 127.0.0.1:5001\ncloud = 127.0.0.1:6000\n"
        "[listener]\nmax_connections = 5\nidentify_timeout = 20\naccept_unknown = yes\n"
    )
    one, two = config.inverters
    assert one.listen == ("::1", 5000) and one.cloud == ("cloud.example", 4346)
    assert one.datalog == "BA12345678"
    assert two.listen == ("127.0.0.1", 5001) and two.cloud == ("127.0.0.1", 6000)
    assert config.listener == ListenerConfig(5, 20.0, True)


def test_listener_cloud_is_the_relay_of_the_accepted_dongles():
    config = parse_config("[lxp]\nlisten = 127.0.0.1:5000\n"
                          "[listener]\naccept_unknown = yes\ncloud = cloud.example\n")
    assert config.listener.cloud == ("cloud.example", 4346)


def test_a_host_section_may_leave_its_serials_out():
    (inverter,) = parse_config("[lxp]\nhost = 192.168.0.10\n").inverters
    assert inverter.serial is None and inverter.datalog is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lxp]\nlisten = 0.0.0.0\n",
         "config.ini: [lxp] listen: port 4346 is also the HTTP API's ([server] port = 4346,"
         " its default): move the API, e.g. [server] port = 8080"),
        ("[lxp]\nlisten = 127.0.0.1:4346\n[server]\nlisten_host = 0.0.0.0\n",
         "config.ini: [lxp] listen: port 4346 is also the HTTP API's"),
        ("[lxp a]\nlisten = 127.0.0.1:9\n[lxp b]\nlisten = ::\n",
         "config.ini: [lxp b] listen: port 4346 is also the HTTP API's"),
        ("[lxp]\nhost = h\nlisten = 0.0.0.0:1\n", "config.ini: [lxp] listen: not with host"),
        ("[lxp]\nhost = h\ncloud = c\n", "config.ini: [lxp] cloud: only with listen"),
        ("[lxp]\nlisten = h:0\n", "config.ini: [lxp] listen: not a port number (1-65535)"),
        ("[lxp]\nlisten = :4346\n", "config.ini: [lxp] listen: no host"),
        ("[lxp]\nlisten = h:1\n[listener]\nmax_connections = 0\n",
         "config.ini: [listener] max_connections: must be at least 1"),
        ("[lxp]\nlisten = h:1\n[listener]\naccept_unknown = perhaps\n",
         "config.ini: [listener] accept_unknown: not yes/no"),
    ],
)
def test_server_mode_mistakes_are_one_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_api_on_another_host_or_port_is_no_clash():
    parse_config("[lxp]\nlisten = 192.168.0.2\n")  # the API stays on 127.0.0.1:4346
    parse_config("[lxp]\nlisten = 0.0.0.0\n[server]\nport = 0\n")


def test_keys_that_mean_nothing_with_listen_are_noted():
    config = parse_config("[lxp]\nlisten = h:1\nport = 8000\nheartbeat_echo = yes\n")
    assert any("[lxp] port: not used with listen" in line for line in config.ignored)
    assert any("[lxp] heartbeat_echo: not used with listen" in line for line in config.ignored)


def test_the_readme_server_mode_example_is_a_working_config():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Server mode", 1)[1]
    example = section.split("```ini\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, "README.md")
    (inverter,) = config.inverters
    assert inverter.listen == ("0.0.0.0", 4346) and inverter.host is None
    assert config.server.port != 4346
