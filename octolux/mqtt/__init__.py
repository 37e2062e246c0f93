"""The MQTT contract (MQ.md).

``client`` is the paho thread; ``bridge`` joins one inverter to its topics.

An output of the device layer: it may import ``octolux.lxp``, ``octolux.config``,
``octolux.net`` and ``octolux.device``, never the web or history.
"""
