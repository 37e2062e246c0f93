"""The inverter as the rest of the program sees it, whatever reaches it.

``inverter`` keeps one connection to a dongle (``ClientService``) and the
inverter's latest state in one register store (``registers``), composing the
transport-free request queue (``requests``) and the serials it learns and
polices (``serials``); commands and the settings table (``commands``,
``settings``) say what a command writes, and ``runner`` is the one way in
for commands, whoever sends them; ``timesync`` keeps the clock;
``listener`` and ``relay`` are server mode and the vendor-cloud relay;
``pacing`` spreads bulk reads. Knows nothing about
MQTT, HTTP or history. May import ``octolux.lxp``, ``octolux.config`` and
``octolux.net``.
"""
