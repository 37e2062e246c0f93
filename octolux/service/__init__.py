"""The wiring.

``tap`` builds the twistd service from the config; ``mqtt_docs`` renders
docs/mqtt.md from every table.

The top layer: it may import anything in octolux; nothing imports it.
"""
