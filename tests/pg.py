"""A throwaway PostgreSQL server for the tests, on 127.0.0.1 only.

``start()`` finds the server's binaries — ``pg_config --bindir``, then
``/usr/lib/postgresql/*/bin`` (newest first), then ``initdb`` on ``PATH``, and
last the ones the ``pgserver`` wheel bundles (in the ``test`` extra, for machines
without a PostgreSQL install) — runs ``initdb`` into a temporary directory and
starts the server on a free port, its Unix socket in that directory, ``fsync``
off.  No binaries at all is an error, never a skip: the PostgreSQL backend is
tested everywhere the suite runs.

``initdb`` refuses to run as root: as root, the directory belongs to the
``postgres`` system user (else ``nobody``) and the commands run as that user
through ``runuser``.  Logins: the superuser ``postgres`` over the Unix socket
(trust, for the fixtures), and the role ``relay`` with a password over TCP
(``scram-sha-256``), so tests use real ``postgresql://relay:…@127.0.0.1`` URLs.
Each test gets its own database (``new_database``).
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROLE = "relay"
TOOLS = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


class NoPostgres(RuntimeError):
    """No PostgreSQL binaries here: the tests of the PostgreSQL backend cannot run."""


def find_bindir() -> tuple[Path, str]:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, and where it was found."""
    candidates: list[tuple[Path, str]] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append((Path(out), "pg_config --bindir"))
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append((Path(found), "/usr/lib/postgresql"))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append((Path(initdb).resolve().parent, "PATH"))
    for bindir, origin in itertools.chain(candidates, _pgserver_bindir()):  # pgserver: only when needed
        if all(os.access(bindir / tool, os.X_OK) for tool in TOOLS):
            return bindir, origin
    raise NoPostgres(
        "the PostgreSQL tests need a PostgreSQL server's binaries (initdb, pg_ctl, postgres) and found none "
        "(looked at pg_config --bindir, /usr/lib/postgresql/*/bin, PATH and the pgserver package): "
        "install PostgreSQL (Debian: apt-get install postgresql) or `pip install '.[test]'` for pgserver"
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _pgserver_bindir() -> Iterator[tuple[Path, str]]:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        return
    yield Path(POSTGRES_BIN_PATH), "pgserver (pip)"


def _system_user() -> str | None:
    """Who runs the server: None (this user), or as root ``postgres`` (else ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise NoPostgres("running as root, and neither a 'postgres' nor a 'nobody' user exists to run initdb as")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    origin: str  # where the binaries were found
    root: Path  # the temporary directory: data, socket, log
    user: str | None  # the system user the server runs as (root only)
    port: int = 0
    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str, *, password: str | None = None, port: int | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{ROLE}:{secret}@127.0.0.1:{port or self.port}/{database}"

    def run(self, *args: str | Path) -> None:
        command = [str(a) for a in args]
        if self.user is not None:
            command = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.root)
        if done.returncode != 0:
            raise NoPostgres(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                f"{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return "\nserver log:\n" + "\n".join(self.log.read_text().splitlines()[-20:])
        except OSError:
            return ""

    def init(self) -> None:
        pwfile = self.root / "superuser-password"
        pwfile.write_text(secrets.token_urlsafe(16) + "\n")  # initdb wants one; the socket login is trust
        self._own(pwfile)
        self.run(
            self.bindir / "initdb", "-D", self.data, "-U", "postgres", f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
        )

    def start(self) -> None:
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self.run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", START_TIMEOUT, "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    async def admin(self, database: str = "postgres") -> asyncpg.Connection:
        """The superuser, over the Unix socket."""
        return await asyncpg.connect(host=str(self.root), port=self.port, user="postgres", database=database)

    async def execute(self, *statements: str, database: str = "postgres") -> None:
        con = await self.admin(database)
        try:
            for statement in statements:
                await con.execute(statement)
        finally:
            await con.close()

    async def new_database(self) -> str:
        """A new, empty database owned by ``relay``; its URL (with the password)."""
        name = f"test_{next(self._numbers)}"
        await self.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)


def start() -> PostgresServer:
    """Find the binaries, ``initdb`` a temporary cluster and start it; ``NoPostgres`` if that fails."""
    bindir, origin = find_bindir()
    user = _system_user()
    root = Path(tempfile.mkdtemp(prefix="llama-relay-pg-"))
    server = PostgresServer(bindir, origin, root, user)
    try:
        server._own(root)
        server.init()
        for attempt in range(3):  # the free port may be taken between choosing and binding it
            try:
                server.start()
                break
            except NoPostgres:
                if attempt == 2:
                    raise
        create_role = server.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
        with ThreadPoolExecutor(1) as thread:  # the caller may be inside a running event loop
            thread.submit(asyncio.run, create_role).result()
    except BaseException:
        server.stop()
        raise
    return server


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that a test can cut: the database "goes away" and comes back."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every connection through it."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers.update((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the other side went away: close this one too
    finally:
        writer.close()
