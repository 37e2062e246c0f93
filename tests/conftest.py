"""Shared fixtures: a real mosquitto broker for the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import settings
from support import free_port
from twisted.internet import task

# Tests never assert on wall-clock time, and hypothesis's per-example deadline
# is one: on a loaded CI machine it fails an example that passes when retried.
settings.register_profile("octolux", deadline=None)
settings.load_profile("octolux")

START_DEADLINE = 10.0  # seconds for mosquitto to accept connections


class Mosquitto:
    """A mosquitto subprocess on 127.0.0.1:``port``; stop()/start() keep the same port."""

    host = "127.0.0.1"

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.port = free_port(self.host)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # mosquitto 2.x listens only on localhost and refuses anonymous clients
        # unless told otherwise by a config file.
        self.conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the broker and wait until it accepts TCP connections (blocking).

        For the session fixture, before any test runs. Inside a test, where
        blocking would stall the reactor, use ``started``.
        """
        self._launch()
        deadline = time.monotonic() + START_DEADLINE
        while not self._accepting(deadline):
            # Waiting on the process itself: returns early if it exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.05)

    async def started(self, reactor) -> None:
        """Start the broker and wait, without blocking the reactor, until it accepts."""
        self._launch()
        deadline = time.monotonic() + START_DEADLINE
        while not self._accepting(deadline):
            await task.deferLater(reactor, 0.05, lambda: None)

    async def restarted(self, reactor) -> None:
        """A broker restart on the same port (mosquitto binds with SO_REUSEADDR)."""
        self.stop()
        await self.started(reactor)

    def _launch(self) -> None:
        assert self.proc is None, "mosquitto is already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.executable, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _accepting(self, deadline: float) -> bool:
        """Does the broker accept connections yet? Raises if it died or took too long."""
        if self.proc.poll() is not None:
            self.proc = None
            raise RuntimeError(f"mosquitto exited at startup:\n{self.log.read_text()}")
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"mosquitto not listening on {self.port}:\n{self.log.read_text()}"
                ) from None
            return False

    def stop(self) -> None:
        """Terminate the broker (clients see the connection drop) and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """A running mosquitto for the whole session.

    Never a skip: the end-to-end tests are the point, and scripts/test.sh
    installs mosquitto, so its absence is a failure, in CI and elsewhere.
    """
    # Debian puts the broker in /usr/sbin, which a non-root PATH may lack.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    executable = shutil.which("mosquitto", path=search)
    if executable is None:
        pytest.fail("mosquitto is not installed (run scripts/setup-env.sh)")
    broker = Mosquitto(executable, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()
