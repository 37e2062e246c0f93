"""Twisted at the wire's edge, shared by the bridge and the simulator.

``protocol`` turns a TCP stream into LXP frames and back, with the idle
timeout; ``badframes`` bounds what a peer's garbage costs the log;
``endpoints`` and ``listening`` describe peers, report failed connection
attempts and hold a listening port; ``logging`` is the log level every debug
line checks. No MQTT, no inverter state. May import ``octolux.lxp`` and
``octolux.config``.
"""
