"""The HTTP API and the page (``static/``): live values, settings, history, commands.

May import ``octolux.history``, ``octolux.mqtt`` and the layers below them.
"""
