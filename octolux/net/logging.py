"""A log level for twistd, which has none of its own (it prints debug events too).

twistd's ``--logger`` names a factory for its log observer. When ``twistd
octolux`` runs without one, ``filter_twistd_log`` points it at
``twistd_observer``: the observer twistd would have made anyway (``-l``,
``--syslog``, stdout), behind a level filter. Under ``twist``, which has
``--log-level`` itself, or with a ``--logger`` of the user's, nothing changes.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    PredicateResult,
)
from zope.interface import implementer


@implementer(ILogFilterPredicate)
class LevelFilter:
    """Drops events below ``level``; events of no level pass.

    (Twisted's LogLevelFilterPredicate also drops events without a namespace.)
    """

    def __init__(self, level=LogLevel.info, quieter: dict[str, LogLevel] | None = None):
        self.level = level
        # Namespaces whose info lines repeat ours: shown only at debug.
        self.quieter = dict(quieter or {})

    def __call__(self, event) -> PredicateResult:
        """``no`` for an event below the level, else ``maybe``."""
        level = event.get("log_level")
        if level is None:
            return PredicateResult.maybe
        if level < self.level:
            return PredicateResult.no
        if self.level > LogLevel.debug:
            minimum = self.quieter.get(event.get("log_namespace"))
            if minimum is not None and level < minimum:
                return PredicateResult.no
        return PredicateResult.maybe


# Process-wide, as logging is: one level for every namespace, ours and Twisted's.
levels = LevelFilter(
    # "Scheduling retry N to connect ... in 1.83 seconds": the inverter's own
    # line already says why the attempt failed and when the next one comes.
    quieter={"twisted.application._client_service.ClientService": LogLevel.warn},
)
_server_options = None  # twistd's ServerOptions, once filter_twistd_log has seen them

OBSERVER_FACTORY = "octolux.net.logging.twistd_observer"


def debug_enabled() -> bool:
    """Is debug logging on? For hex dumps, which are too costly to build per frame otherwise."""
    return levels.level <= LogLevel.debug


def set_level(name: str) -> None:
    """Drop events below level ``name`` (debug, info, warn, error, critical)."""
    levels.level = LogLevel.levelWithName(name)


def filter_twistd_log(server_options, level: str) -> bool:
    """Make twistd log through the level filter; False if it cannot (not twistd, or --logger)."""
    global _server_options
    set_level(level)
    if server_options is None or "logger" not in server_options or "syslog" not in server_options:
        return False  # not twistd's ServerOptions (tests, or `twist`)
    if server_options["logger"] not in (None, OBSERVER_FACTORY):
        return False  # the user's own --logger wins
    _server_options = server_options
    # twistd resolves this name to the factory after our options are parsed.
    server_options["logger"] = OBSERVER_FACTORY
    return True


def twistd_observer() -> ILogObserver:
    """twistd's ``--logger`` factory: its usual observer behind ``levels``."""
    # The runner's own choice between stdout, a rotating file and syslog,
    # reused rather than copied (a private method, but stable since 2016).
    from twisted.scripts._twistd_unix import UnixAppLogger

    observer = UnixAppLogger(_server_options)._getLogObserver()
    if not ILogObserver.providedBy(observer):
        observer = LegacyLogObserverWrapper(observer)  # syslog's observer is the old kind
    return FilteringLogObserver(observer, [levels])
