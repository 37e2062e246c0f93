"""A simulated LuxPower inverter and WiFi datalogger, speaking the real wire protocol."""
