"""Battery automation: Octopus Agile prices, the planners, and carrying a plan out.

``prices`` reads Octopus's public unit-rate pages and the price cache (pure);
``planner`` chooses, for each half-hour, what the battery does (pure: the
original tool's rule and ours); ``windows`` turns a plan into the inverter's
own time slots and rates (pure); ``service`` runs it all: it fetches the pages
off the reactor, writes through the device layer's commands, reads the
recorded load and PV from the history and publishes ``plan`` on MQTT.

Rank 5, beside ``homeassistant`` and ``web``: it may import ``octolux.history``,
``octolux.mqtt`` and the layers below them.
"""
