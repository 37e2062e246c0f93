"""The history for ``makeService``: the stores ``[history]`` asks for, their writers, queries.

``HistoryService`` gives every sample to each store's ``HistoryWriter`` and
answers ``query`` (``GET /api/history``) from the first store through
``deferToThreadPool``, so that no database call ever runs on the reactor
thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from octolux.config.ini import HistoryConfig
from octolux.history.postgres import PostgresStore
from octolux.history.query import Query, Sample
from octolux.history.recorder import Recorder
from octolux.history.sqlite import SqliteStore
from octolux.history.store import Store
from octolux.history.writer import HistoryWriter

log = Logger()


class HistoryService(service.Service):
    """The writers of the configured stores, and queries against the first one.

    Queries run in a thread pool of their own, so a slow database never takes
    the threads the reactor lends to others (name resolution, for instance).
    """

    def __init__(self, reactor, stores: Sequence[Store], **writer_options):
        self._reactor = reactor
        self.stores = tuple(stores)
        self.writers = [HistoryWriter(store, reactor, **writer_options) for store in stores]
        self._pool = ThreadPool(minthreads=0, maxthreads=2, name="octolux-history-queries")

    def recorder(self, inverter_name: str) -> Recorder:
        """An observer recording one inverter into every store."""
        return Recorder(inverter_name, self, self._reactor)

    def add(self, samples: Sequence[Sample]) -> None:
        """Give ``samples`` to every writer (reactor thread; never blocks)."""
        for writer in self.writers:
            writer.add(samples)

    def query(self, query: Query) -> defer.Deferred[dict[str, list]]:
        """Answer ``query`` from the first store, off the reactor thread."""
        store = self.stores[0]
        return threads.deferToThreadPool(self._reactor, self._pool, store.query, query)

    @property
    def query_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions meaning "the database that answers queries is unavailable"."""
        return self.stores[0].errors

    def startService(self) -> None:
        """Start the writers and the query pool."""
        super().startService()
        for store in self.stores:
            log.info("history: recording into {store}", store=store.description)
        self._pool.start()
        for writer in self.writers:
            writer.start()

    def stopService(self) -> defer.Deferred:
        """Flush the writers; then stop the query pool (joining its threads off the reactor)."""
        super().stopService()
        stopping = defer.gatherResults([writer.stop() for writer in self.writers])
        # On the reactor's own pool, as given: no global reactor here.
        stopping.addCallback(lambda _: threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._stop_pool))
        return stopping

    def _stop_pool(self) -> None:
        # Each pool thread closes its own connection; there is no way to run
        # code on a given pool thread, so idle threads' connections go with
        # the threads (SQLite and libpq close them when collected).
        self._pool.stop()


def open_stores(config: HistoryConfig) -> list[Store]:
    """The stores ``[history]`` asks for; the first answers queries.

    With both, SQLite comes first: the page's charts then keep working while
    the PostgreSQL server is away.
    """
    stores: list[Store] = []
    if config.path is not None:
        stores.append(
            SqliteStore(config.path, retention=config.retention, max_size=config.max_size)
        )
    if config.uri is not None:
        stores.append(PostgresStore(config.uri, retention=config.retention))
    return stores
