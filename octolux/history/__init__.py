"""What the inverter said, kept: the recorder, the SQLite and PostgreSQL stores and queries.

An output of the device layer: it may import ``octolux.lxp``, ``octolux.config``,
``octolux.net`` and ``octolux.device``, never MQTT or the web.
"""
