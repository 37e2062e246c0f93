"""octolux: bridge a LuxPower inverter's WiFi datalogger to MQTT.

The packages are layers; each may import only the layers listed before it
(``tests/test_layers.py`` fails otherwise):

- ``lxp``: the wire format. Pure: frames, CRC, stream framing, register maps.
- ``config``: ``config.ini`` read into frozen attrs classes, with the defaults.
- ``modbus`` (beside ``config``): Modbus TCP and RTU framing, for the inverter's
  RS485 port. Pure, like ``lxp``, whose CRC it shares.
- ``net``: Twisted at the wire's edge: the LXP protocol, bad-frame log, endpoints.
- ``device``: the inverter (connection, requests, register store), commands,
  settings, clock, server mode and the cloud relay.
- ``history``, ``mqtt``: the outputs of the device layer.
- ``homeassistant`` (on MQTT) and ``web`` (on history): outputs built on outputs.
- ``automation`` (beside them): Octopus Agile prices, the battery planners, and
  the plan carried out through the device's commands, published on MQTT.
- ``service``: the wiring (``makeService``); nothing imports it.

docs/architecture.md draws the data path through them.
"""

__version__ = "0.1.0"
