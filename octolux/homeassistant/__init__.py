"""Home Assistant MQTT discovery.

- ``entities``: the entity tables, built from the input fields and the settings table (pure).
- ``payloads``: one inverter's device and the retained config of each entity (pure).
- ``discovery``: ``HomeAssistantDiscovery``, keeping one inverter's configs on the broker.
- ``sweeper``: ``OrphanSweeper``, clearing the configs of inverters no longer served.
- ``docs``: docs/homeassistant.md (``python -m octolux.homeassistant.docs --list``).

Built on ``octolux.mqtt``: may import it and every layer below it.
"""
