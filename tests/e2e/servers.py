"""Throwaway servers for fault tests, which stop and start them: never the shared ones."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (scripts/services.sh does)")
    return found


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, on a free port, with trust authentication.
    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user."""

    def __init__(
        self, host: str = "127.0.0.1", *, prefix: tuple[str, ...] = (), trust: str | None = None
    ) -> None:
        """`prefix` runs the server elsewhere (`ip netns exec C`); `trust`: a network (CIDR) whose
        clients are trusted too, besides this machine's loopback."""
        self.host = host
        self.prefix = list(prefix)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobwire-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@{host}:{self.port}/jobwire"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if trust is not None:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {trust} trust\n")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run(
            [*self.prefix, *prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={self.host}"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction pooling mode on a free port, in front of a PostgreSQL at
    `host:port` (trust authentication), with few server connections so that clients share them.
    PgBouncer refuses to run as root, so as root it runs as `postgres`."""

    def __init__(self, host: str, port: int, *, pool_size: int = 3) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer not found: install it (scripts/test does, from Debian's packages)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobwire-pgbouncer-"))
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={host} port={port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'users.txt'}",
                    "admin_users = postgres",
                    "pool_mode = transaction",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 500",
                    f"logfile = {self.dir / 'log'}",
                    f"pidfile = {self.dir / 'pid'}",
                ]
            )
            + "\n"
        )
        as_postgres = os.geteuid() == 0
        if as_postgres:
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self.proc = subprocess.Popen(
            [*prefix, binary, str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
