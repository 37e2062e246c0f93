"""Helpers shared by the tests: free ports and running twistd."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago, below the ephemeral range.

    Port 0 would give one from the ephemeral range, where any process's
    outgoing connection (the benchmarks open thousands) can take it between
    this check and the test's bind; ports below that range only go to those
    who ask for them.
    """
    while True:
        port = _probe_free_port(host)
        # A port handed out earlier may not be bound yet (the API and the
        # simulator of one test ask one after the other): never give it twice.
        if port not in _handed_out:
            _handed_out.add(port)
            return port


_handed_out: set[int] = set()


def _probe_free_port(host: str) -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(10_000, max(low, 10_001)), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def twistd_command() -> list[str]:
    """The twistd of the running interpreter's environment (the venv's, under scripts/test.sh)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [script]
    # Not `python -m twisted`: that runs `twist`, not `twistd`.
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def run_twistd(args: list[str], cwd: str | Path, log_path: str | Path | None = None):
    """Start `twistd *args` in ``cwd``; stdout and stderr go to ``log_path``.

    Pass `-n` (and usually `--pidfile=` and `-l -`) yourself. Stop it with stop_process().
    """
    if log_path is None:
        log_path = Path(cwd) / "twistd-output.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            twistd_command() + list(args),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM ``proc`` and wait; SIGKILL it if still alive after ``timeout``.

    Returns the exit status: twistd that shut down cleanly on SIGTERM reports -15.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
