"""octolux: bridge a LuxPower inverter's WiFi datalogger to MQTT."""

__version__ = "0.1.0"
