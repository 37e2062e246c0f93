"""What the inverter said, kept: the recorder, the SQLite and PostgreSQL stores and queries.

- ``query``: ``Sample``, ``Query`` and the ``GET /api/history`` arguments (pure).
- ``recorder``: an inverter observer turning what it reports into samples.
- ``store``: the ``Store`` interface; ``sqlite`` and ``postgres``: the two stores.
- ``writer``: one thread per store, a bounded buffer, retries while the database is away.
- ``service``: ``HistoryService`` and ``open_stores``, for ``makeService``.

No database call ever runs on the reactor thread.

An output of the device layer: it may import ``octolux.lxp``, ``octolux.config``,
``octolux.net`` and ``octolux.device``, never MQTT or the web.
"""
