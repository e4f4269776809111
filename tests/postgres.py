"""A real, private PostgreSQL server: ``initdb`` in a temporary folder, a free port, stopped
at the end. The tests' ``postgres`` fixture and ``bench/memory.py`` start one; never a mock.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user
(the Debian package creates it) and its folder is handed to that user. ``make test`` installs
PostgreSQL where it is missing and sets ``SAFEWORK_TEST_POSTGRES=1``, which makes a missing
server a failure of the fixture rather than a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REQUIRED = os.environ.get("SAFEWORK_TEST_POSTGRES") == "1"


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def eventually(check: Callable[[], bool], timeout: float = 1.0) -> float:
    """Seconds until ``check()`` held (polled every 10 ms); a test failure after ``timeout``:
    how the replica tests wait for a change to reach another replica."""
    import pytest

    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NotInstalledError(RuntimeError):
    pass


class PostgresServer:
    """One PostgreSQL cluster; ``url(db)`` for a database of it; ``stop``/``start``/``kill``
    to take it away under load."""

    def __init__(self) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise NotInstalledError("PostgreSQL is not installed (make test installs it)")
        self.pg_ctl = pg_ctl
        self.as_postgres = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="safework-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(initdb, "-D", str(self.data), "-U", "safework", "--auth=trust", "-E", "UTF8")
        self.start()

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_postgres else list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c max_connections=200"
        )
        log = str(self.folder / "server.log")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: as if the server crashed."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://safework@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
