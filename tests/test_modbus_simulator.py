"""The simulator's RS485 port: its plant served over Modbus TCP and RTU, without a reactor."""

from __future__ import annotations

import datetime

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from octolux import modbus
from octolux.lxp.inputs import decode_inputs
from simulator.dongle import DongleConfig, DongleFactory
from simulator.modbus_server import ModbusListen, ModbusServerProtocol

START = datetime.datetime(2024, 6, 21, 12, 0)


def served(*, rtu: bool, units=(1,)):
    clock = Clock()
    dongles = {unit: DongleFactory(clock, DongleConfig(seed=unit, start=START,
                                                       inverter=f"SIMINV000{unit}"))
               for unit in units}
    server = ModbusServerProtocol(dongles, rtu=rtu)
    transport = StringTransport()
    server.makeConnection(transport)
    return server, transport, dongles


def ask(server, transport, message: modbus.Message, *, rtu: bool) -> list[modbus.Message]:
    server.dataReceived(modbus.encode_rtu(message) if rtu else modbus.encode_tcp(message))
    data = transport.value()
    transport.clear()
    return (modbus.RtuDecoder() if rtu else modbus.TcpDecoder()).feed(data)


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu"])
def test_inputs_are_the_plants_big_endian_on_the_wire(rtu):
    server, transport, dongles = served(rtu=rtu)
    (reply,) = ask(server, transport, modbus.Message(1, modbus.ReadRequest(4, 80, 40), 7),
                   rtu=rtu)
    assert reply.transaction == (None if rtu else 7)
    assert decode_inputs(80, reply.pdu.values)["inverter_serial"] == "SIMINV0001"
    assert reply.pdu.values == dongles[1].plant.input_registers()[80:120]


def test_a_write_changes_the_plant_as_over_the_dongle():
    server, transport, dongles = served(rtu=False)
    (reply,) = ask(server, transport, modbus.Message(1, modbus.WriteSingle(65, 50), 1),
                   rtu=False)
    assert reply.pdu == modbus.WriteSingle(65, 50)
    assert dongles[1].plant.holding[65] == 50


def test_a_refused_write_is_an_exception_and_changes_nothing():
    server, transport, dongles = served(rtu=True)
    before = dongles[1].plant.holding[65]
    (reply,) = ask(server, transport, modbus.Message(1, modbus.WriteSingle(65, 500)), rtu=True)
    assert reply.pdu == modbus.ExceptionResponse(6, 3)
    assert dongles[1].plant.holding[65] == before


def test_each_simulated_inverter_is_a_unit_on_one_bus():
    server, transport, dongles = served(rtu=True, units=(1, 2))
    (reply,) = ask(server, transport, modbus.Message(2, modbus.ReadRequest(4, 80, 40)),
                   rtu=True)
    assert reply.unit == 2
    assert decode_inputs(80, reply.pdu.values)["inverter_serial"] == "SIMINV0002"
    # A unit nobody is: silence, as on a real bus.
    assert ask(server, transport, modbus.Message(3, modbus.ReadRequest(4, 0, 40)),
               rtu=True) == []


def test_a_garbled_request_costs_only_itself():
    server, transport, _ = served(rtu=True)
    good = modbus.encode_rtu(modbus.Message(1, modbus.ReadRequest(3, 64, 2)))
    bad = bytearray(good)
    bad[3] ^= 0x10
    server.dataReceived(bytes(bad) + good)
    replies = modbus.RtuDecoder().feed(transport.value())
    assert [r.pdu.function for r in replies] == [3]
    assert len(replies[0].pdu.values) == 2


@pytest.mark.parametrize("text, expected", [
    ("tcp:5020", ModbusListen("tcp", port=5020)),
    ("rtu-over-tcp:0", ModbusListen("rtu-over-tcp", port=0)),
    ("pty:/tmp/inverter", ModbusListen("pty", path="/tmp/inverter")),
])
def test_the_modbus_option(text, expected):
    assert ModbusListen.parse(text) == expected


@pytest.mark.parametrize("text", ["tcp", "udp:502", "tcp:http", "tcp:70000", "pty:"])
def test_a_bad_modbus_option_says_what_it_wants(text):
    with pytest.raises(ValueError, match="tcp:PORT|port number"):
        ModbusListen.parse(text)
