"""PostgreSQL and Redis servers of a test's own, which the test can stop and start again (the
machine's shared ones must never be stopped). Where the binaries are missing the tests that
need them skip and say why; under ``LOCKGATE_REQUIRE_SERVICES=1`` (CI) they fail instead."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from gateway import free_port, wait_for
from services import unavailable


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` + ``pg_ctl``), so the test can stop and
    start it. PostgreSQL refuses to run as root: as root, it runs as the ``postgres`` user."""

    def __init__(self, bindir: Path, user: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="lockgate-pg-"))
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        # Output to a file, not a pipe: the server pg_ctl starts would hold a pipe open.
        with (self.dir / "tools.log").open("ab") as log:
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                           timeout=60, cwd=self.dir)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def log(self) -> str:
        logs = [self.dir / "tools.log", self.dir / "server.log"]
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs if p.exists())

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def private_postgres_server() -> PrivatePostgres:
    """A started ``PrivatePostgres`` (the caller removes it), or a skip saying why there is none."""
    bindirs = sorted(Path(p) for p in Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs or not (bindirs[-1] / "pg_ctl").exists():
        unavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            unavailable("running as root and there is no 'runuser' to run PostgreSQL as 'postgres'")
    pg = PrivatePostgres(bindirs[-1], user)
    try:
        pg.init()
        pg.start()
    except (subprocess.SubprocessError, OSError) as exc:
        log = pg.log()
        pg.remove()
        unavailable(f"could not start a private PostgreSQL ({exc}): {log}")
    return pg


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart loses
    every key, as a Redis pod rescheduled without a volume does."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lockgate-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.alive, 10, "the private Redis to start")

    def alive(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def private_redis_server() -> PrivateRedis:
    """A started ``PrivateRedis`` (the caller removes it), or a skip saying why there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("no redis-server binary on PATH")
    assert binary is not None
    server = PrivateRedis(binary)
    try:
        server.start()
    except (AssertionError, OSError) as exc:
        server.remove()
        unavailable(f"could not start a private Redis: {exc}")
    return server
