"""[lxp] modbus, unit and poll_interval: the RS485 port in config.ini."""

from __future__ import annotations

from pathlib import Path

import pytest

from octolux.config.ini import ConfigError, ModbusConfig, parse_config


def inverter(lines: str):
    config = parse_config("[lxp]\n" + lines)
    return config.inverters[0], config.ignored


def test_a_modbus_tcp_gateway_with_the_defaults():
    found, ignored = inverter("modbus = tcp://192.168.0.20\n")
    assert found.host is None
    assert found.modbus == ModbusConfig("tcp", host="192.168.0.20", port=502, unit=1,
                                        poll_interval=10.0)
    assert found.modbus.address == "tcp://192.168.0.20:502"
    assert ignored == ()


def test_rtu_over_tcp_with_its_port_unit_and_interval():
    found, _ = inverter("modbus = rtu-over-tcp://[fd00::20]:8899\nunit = 2\npoll_interval = 30\n")
    assert found.modbus == ModbusConfig("rtu-over-tcp", host="fd00::20", port=8899, unit=2,
                                        poll_interval=30.0)
    assert found.modbus.address == "rtu-over-tcp://[fd00::20]:8899"


def test_a_serial_port_with_its_baudrate():
    found, _ = inverter("modbus = serial:///dev/ttyUSB0?baudrate=9600\nserial = AB12345678\n")
    assert found.modbus == ModbusConfig("serial", path="/dev/ttyUSB0", baudrate=9600)
    assert found.modbus.address == "serial:///dev/ttyUSB0"
    assert found.serial == "AB12345678"


def test_a_serial_port_at_the_documented_19200_baud_by_default():
    found, _ = inverter("modbus = serial:///dev/ttyUSB0\n")
    assert found.modbus.baudrate == 19200


def test_keys_of_the_dongle_path_are_noted_as_unused():
    _, ignored = inverter("modbus = tcp://gw\nport = 8000\nno_data_timeout = 60\n")
    assert ignored == (
        "config.ini: [lxp] port: not used with modbus, ignored",
        "config.ini: [lxp] no_data_timeout: not used with modbus, ignored",
    )


def test_unit_without_modbus_is_noted_as_unused():
    _, ignored = inverter("host = 192.0.2.1\nunit = 2\n")
    assert ignored == ("config.ini: [lxp] unit: only used with modbus, ignored",)


@pytest.mark.parametrize("lines, message", [
    ("modbus = udp://gw:502\n", "[lxp] modbus: scheme must be tcp://, rtu-over-tcp:// or serial://"),
    ("modbus = rtu-over-tcp://gw\n", "[lxp] modbus: needs a port number (1-65535)"),
    ("modbus = tcp://gw:0\n", "[lxp] modbus: needs a port number (1-65535)"),
    ("modbus = tcp://gw:502/x\n", "[lxp] modbus: not tcp://HOST:PORT"),
    ("modbus = serial://dev/ttyUSB0\n", "[lxp] modbus: not serial:///DEVICE[?baudrate=N]"),
    ("modbus = serial:///dev/ttyUSB0?parity=E\n", "not serial:///DEVICE[?baudrate=N]"),
    ("modbus = serial:///dev/ttyUSB0?baudrate=fast\n", "baudrate must be 1200-921600"),
    ("modbus = tcp://gw\nunit = 0\n", "[lxp] unit: a Modbus address is 1-247"),
    ("modbus = tcp://gw\nunit = one\n", "[lxp] unit: not a number"),
    ("modbus = tcp://gw\npoll_interval = 0.5\n", "[lxp] poll_interval: at least 1 s"),
    ("modbus = tcp://gw\nhost = 192.0.2.1\n", "[lxp] modbus: not with host"),
    ("modbus = tcp://gw\nlisten = 0.0.0.0\n", "[lxp] modbus: not with listen"),
])
def test_a_bad_modbus_line_names_file_section_and_key(lines, message):
    with pytest.raises(ConfigError, match="config.ini: ") as raised:
        inverter(lines)
    assert message in str(raised.value)


def test_several_inverters_share_a_line_by_unit():
    config = parse_config(
        "[lxp one]\nmodbus = serial:///dev/ttyUSB0\n"
        "[lxp two]\nmodbus = serial:///dev/ttyUSB0\nunit = 2\n")
    assert [i.modbus.unit for i in config.inverters] == [1, 2]


@pytest.mark.parametrize("second, message", [
    ("modbus = serial:///dev/ttyUSB0\n",
     "[lxp two] unit: serial:///dev/ttyUSB0 has unit 1 in [lxp one] too"),
    ("modbus = serial:///dev/ttyUSB0?baudrate=9600\nunit = 2\n",
     "[lxp two] modbus: one line, one speed: [lxp one] says otherwise"),
])
def test_inverters_on_one_line_must_fit_together(second, message):
    with pytest.raises(ConfigError) as raised:
        parse_config("[lxp one]\nmodbus = serial:///dev/ttyUSB0\n[lxp two]\n" + second)
    assert message in str(raised.value)


def test_the_readme_rs485_example_is_a_working_config():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Without the dongle", 1)[1]
    example = section.split("```ini\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, "README.md")
    assert config.inverters[0].modbus == ModbusConfig("tcp", host="192.168.0.20", port=502)
