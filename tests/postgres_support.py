"""A private PostgreSQL server for tests and benchmarks: initdb, pg_ctl, a free loopback port.

Debian's ``postgresql`` package (installed by scripts/setup-env.sh) provides
the binaries; nothing here touches the system's own cluster. PostgreSQL
refuses to run as root, so as root every command runs as the ``postgres``
user (``runuser``), in a directory of its own under /tmp that it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from support import free_port


def postgres_bin() -> Path:
    """The newest PostgreSQL's bin directory, or an error saying how to install one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: int(path.split("/")[4]))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run scripts/setup-env.sh --tests"
            " (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


class PostgresCluster:
    """One private cluster on 127.0.0.1:``port``; ``stop()``/``start()`` keep the port."""

    host = "127.0.0.1"
    user = "octolux"

    def __init__(self):
        self.bin = postgres_bin()
        self.port = free_port(self.host)
        self.password = "pw-" + secrets.token_hex(8)
        self._as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: its parents are private to root, and the
        # server (the postgres user, when we are root) must reach its files.
        self.workdir = Path(tempfile.mkdtemp(prefix="octolux-postgres-"))
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"
        password_file = self.workdir / "password"
        password_file.write_text(self.password + "\n")
        if self._as_root:
            account = pwd.getpwnam("postgres")
            for path in (self.workdir, password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--pwfile", str(password_file),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        password_file.unlink()
        self.running = False

    @property
    def uri(self) -> str:
        """Where the bridge connects (the password included, as a user would write it)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/postgres"

    def _run(self, tool: str, *arguments: str) -> None:
        command = [str(self.bin / tool), *arguments]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed:\n{result.stdout}{result.stderr}\n{log}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (blocking: run it in a thread)."""
        options = (f"-p {self.port} -c listen_addresses={self.host}"
                   f" -c unix_socket_directories={self.workdir} -c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "30", "start")
        self.running = True

    def stop(self) -> None:
        """Stop the server at once, ending every connection (``pg_ctl -m fast``)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
            self.running = False

    def remove(self) -> None:
        """Stop the server and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
