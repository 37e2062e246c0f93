"""twistd dropins. ServiceMaker imports the tap modules lazily, so `twistd --help` stays cheap."""

from twisted.application.service import ServiceMaker

octolux = ServiceMaker(
    "octolux",
    "octolux.service.tap",
    "Bridge a LuxPower inverter datalogger to MQTT",
    "octolux",
)

lxp_simulator = ServiceMaker(
    "lxp-simulator",
    "simulator.tap",
    "Simulate a LuxPower inverter and its WiFi datalogger",
    "lxp-simulator",
)
