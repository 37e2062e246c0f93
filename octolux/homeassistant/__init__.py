"""Home Assistant MQTT discovery.

The entity tables, the configs published from them, the sweep of entities no
longer served.

Built on ``octolux.mqtt``: may import it and every layer below it.
"""
