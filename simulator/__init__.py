"""A simulated LuxPower inverter and WiFi datalogger, speaking the real wire protocol.

- ``plant``: the inverter, battery, PV and house as a pure model (no Twisted)
- ``dongle``: the datalogger over TCP; ``start_simulator`` for in-process tests
- ``state``: holding registers kept across restarts
- ``tap``: ``twistd lxp-simulator`` (options and wiring)
"""
