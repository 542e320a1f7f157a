"""The connection manager: one thread-safe psycopg2 pool per process.

``SyncConnectionPool`` is a pool object: psycopg2's ``ThreadedConnectionPool``
behind a ``threading.Condition`` that adds what psycopg2 lacks: callers wait
(up to ``pool_timeout``) instead of failing at once, broken and stale
connections are thrown away instead of handed out, and counters are kept.

``PostgreSQLSyncConnectionManager`` is the process-wide face of it: the pool
of *this* process, opened on ``initialize()`` (or lazily on first use) and
closed on ``close()``. A pool inherited through ``fork()`` is never used or
closed by the child; the child opens its own.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from .errors import (
    DatabaseUnavailable,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TransactionAborted,
    first_line,
)
from .settings import PostgresSettings

logger = logging.getLogger(__name__)

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_IN_ERROR = psycopg2.extensions.TRANSACTION_STATUS_INERROR


# Session settings the server reports to the client whenever they change (ParameterStatus
# messages), so a change is seen on return without a round trip. PostgreSQL 18 reports
# search_path too; older servers do not (POSTGRES_RESET_ON_RETURN covers them).
REPORTED_SETTINGS = (
    "search_path",
    "TimeZone",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "standard_conforming_strings",
    "default_transaction_read_only",
    "application_name",
    "session_authorization",
    "is_superuser",
)


class PooledConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that remembers when it was opened and last returned, and the
    session settings it was opened with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = self.idle_since = self.checked_out_at = time.monotonic()
        self.configured = reported_settings(self)


def reported_settings(conn: psycopg2.extensions.connection) -> tuple[str | None, ...]:
    info = conn.info
    return tuple(info.parameter_status(name) for name in REPORTED_SETTINGS)


class _KeepIdleThreadedPool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's pool closes every returned connection once ``minconn`` are idle,
    so a pool with min < max would reconnect on almost every checkout under load.
    This one opens ``minconn`` at start but keeps up to ``maxconn`` idle; the
    manager trims idle ones by ``max_idle`` instead.
    """

    def __init__(self, minconn: int, maxconn: int, **kwargs: Any) -> None:
        self.opened = 0
        self.connect_errors = 0
        super().__init__(minconn, maxconn, **kwargs)
        self.minconn = maxconn  # read by _putconn as "keep this many idle"

    def _connect(self, key: Any = None) -> PooledConnection:
        try:
            conn = super()._connect(key)
        except psycopg2.Error:
            self.connect_errors += 1
            raise
        self.opened += 1
        return conn

    def idle_connections(self) -> list[PooledConnection]:
        with self._lock:
            return list(self._pool)

    def take_idle(self, keep: int, is_stale: Any) -> list[PooledConnection]:
        """Remove and return idle connections that ``is_stale``, leaving at least ``keep``."""
        with self._lock:
            stale = [c for c in self._pool if is_stale(c)]
            stale = stale[: max(0, len(self._pool) + len(self._used) - keep)]
            for conn in stale:
                self._pool.remove(conn)
            return stale


class SyncConnectionPool:
    """A thread-safe pool of psycopg2 connections for one process."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.owner_pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._in_use = 0
        self._counters = dict.fromkeys(
            (
                "requests_num",
                "requests_waiting",
                "requests_wait_ms",
                "requests_timeouts",
                "connections_lost",
                "connections_recycled",
                "returns_bad",
                "returns_changed",
                "usage_ms",
            ),
            0,
        )
        self._next_trim = time.monotonic() + settings.max_idle
        app_name = settings.pool_application_name(self.owner_pid)
        try:
            self._pool = _KeepIdleThreadedPool(
                settings.min_connections,
                settings.max_connections,
                connection_factory=PooledConnection,
                **settings.connect_kwargs(application_name=app_name),
            )
        except psycopg2.OperationalError as exc:
            raise _unavailable(settings, exc) from exc
        _live_pools.add(self)
        logger.info(
            "opened PostgreSQL pool for pid %s: %s, %d..%d connections",
            self.owner_pid,
            settings.describe(),
            settings.min_connections,
            settings.max_connections,
        )

    # -- public API ------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[PooledConnection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        conn = self._checkout()
        try:
            try:
                yield conn
                _commit(conn)
            except BaseException:
                _rollback_quietly(conn)
                raise
        finally:
            self._checkin(conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close idle connections now and in-use ones as they come back.

        Idempotent; waiting and later callers get ``PoolClosed``. Connections in
        use are not pulled from under their holder, whose transaction still ends
        normally.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for conn in self._pool.take_idle(keep=0, is_stale=lambda _conn: True):
            conn.close()
        _live_pools.discard(self)
        logger.info("closed PostgreSQL pool for pid %s", self.owner_pid)

    def stats(self) -> dict[str, int]:
        """Counters named like psycopg_pool's ``get_stats()``."""
        with self._cond:
            counters = {name: int(value) for name, value in self._counters.items()}
            in_use = self._in_use
        idle = len(self._pool.idle_connections())
        return {
            "pool_min": self.settings.min_connections,
            "pool_max": self.settings.max_connections,
            "pool_size": idle + in_use,
            "pool_available": idle,
            "pool_in_use": in_use,
            **counters,
            "connections_num": self._pool.opened,
            "connections_errors": self._pool.connect_errors,
            "pid": self.owner_pid,
        }

    # -- checkout / checkin ----------------------------------------------------

    def _checkout(self) -> PooledConnection:
        if os.getpid() != self.owner_pid:
            raise PoolError(
                f"this pool was opened by process {self.owner_pid} and cannot be used from "
                f"process {os.getpid()} after fork(): open a new pool in this process "
                "(PostgreSQLSyncConnectionManager does this for you)."
            )
        self._reserve_slot()
        try:
            return self._usable_connection()
        except BaseException:
            self._release_slot()
            raise

    def _reserve_slot(self) -> None:
        with self._cond:
            self._raise_if_closed()
            self._counters["requests_num"] += 1
            if self._in_use < self.settings.max_connections:
                self._in_use += 1
                return
            started = time.monotonic()
            deadline = started + self.settings.pool_timeout
            self._counters["requests_waiting"] += 1
            try:
                while self._in_use >= self.settings.max_connections:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._counters["requests_timeouts"] += 1
                        raise PoolTimeout(self._timeout_message())
                    self._cond.wait(remaining)
                    self._raise_if_closed()
                self._in_use += 1
            finally:
                self._counters["requests_waiting"] -= 1
                self._counters["requests_wait_ms"] += int((time.monotonic() - started) * 1000)

    def _release_slot(self, used_ms: float = 0.0) -> None:
        with self._cond:
            self._in_use -= 1
            self._counters["usage_ms"] += used_ms  # time the connection spent checked out
            self._cond.notify()

    def _usable_connection(self) -> PooledConnection:
        # Each pass consumes one idle connection, so this ends by opening a new one at worst.
        while True:
            try:
                conn = self._pool.getconn()
            except psycopg2.OperationalError as exc:
                raise _unavailable(self.settings, exc) from exc
            except psycopg2.pool.PoolError:
                self._raise_if_closed()
                raise
            problem = self._problem_with(conn)
            if problem is None:
                conn.checked_out_at = time.monotonic()
                return conn
            self._discard(conn, problem)

    def _checkin(self, conn: PooledConnection) -> None:
        used_ms = (time.monotonic() - conn.checked_out_at) * 1000
        try:
            if self._closed:
                self._pool.putconn(conn, close=True)
                return
            problem = _state_problem(conn) or self._restore_session(conn)
            if problem is None and self._too_old(conn):
                problem = "recycled"
            if problem is None:
                conn.idle_since = time.monotonic()
                self._pool.putconn(conn)
            else:
                self._discard(conn, problem)
        finally:
            self._release_slot(used_ms)
        self._trim_idle()

    def _restore_session(self, conn: PooledConnection) -> str | None:
        """Give a returned connection back the session the pool configured, or say why it
        must be closed instead. The transaction characteristics psycopg2 keeps on the
        connection (read only, isolation, deferrable, autocommit) are put back without a
        round trip; a change of a reported setting (search_path, TimeZone, ...) means the
        caller ran SET: the connection is replaced."""
        if conn.autocommit:
            conn.autocommit = False
        if conn.readonly is not None or conn.isolation_level is not None or conn.deferrable:
            conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT")
        if reported_settings(conn) != conn.configured:
            return "changed"
        if self.settings.reset_on_return:
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("RESET ALL")
                conn.autocommit = False
            except psycopg2.Error:
                return "returned_bad"
        return None

    # -- connection health -----------------------------------------------------

    def _problem_with(self, conn: PooledConnection) -> str | None:
        """Why an idle connection must not be handed out, or None if it is fine."""
        if _state_problem(conn) or _has_unread_data(conn):
            return "lost"
        if self._too_old(conn) or self._idle_too_long(conn, time.monotonic()):
            return "recycled"
        return None

    def _too_old(self, conn: PooledConnection) -> bool:
        return time.monotonic() - conn.opened_at > self.settings.max_lifetime

    def _idle_too_long(self, conn: PooledConnection, now: float) -> bool:
        return now - conn.idle_since > self.settings.max_idle

    def _discard(self, conn: PooledConnection, why: str) -> None:
        counter = {
            "lost": "connections_lost",
            "recycled": "connections_recycled",
            "changed": "returns_changed",
        }.get(why, "returns_bad")
        with self._cond:
            self._counters[counter] += 1
        logger.debug("discarding connection (%s) in pid %s", why, self.owner_pid)
        try:
            self._pool.putconn(conn, close=True)
        except psycopg2.pool.PoolError:
            conn.close()  # the pool was closed meanwhile

    def _trim_idle(self) -> None:
        """Close idle connections past ``max_idle`` or ``max_lifetime``, at most once a while."""
        now = time.monotonic()
        if now < self._next_trim or self._closed:
            return
        self._next_trim = now + min(self.settings.max_idle, self.settings.max_lifetime) / 2
        stale = self._pool.take_idle(
            self.settings.min_connections,
            lambda c: self._idle_too_long(c, now) or self._too_old(c),
        )
        for conn in stale:
            conn.close()
        if stale:
            with self._cond:
                self._counters["connections_recycled"] += len(stale)

    # -- messages --------------------------------------------------------------

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise PoolClosed(
                "the PostgreSQL pool is closed: call PostgreSQLSyncConnectionManager.initialize() "
                "to open it again."
            )

    def _timeout_message(self) -> str:
        waiting = self._counters["requests_waiting"] - 1
        return (
            f"no free PostgreSQL connection after {self.settings.pool_timeout:g} s: "
            f"all {self._in_use} of {self.settings.max_connections} configured connections "
            f"(POSTGRES_MAX_CONNECTIONS) are in use and {waiting} other caller(s) are waiting. "
            "Raise POSTGRES_MAX_CONNECTIONS or POSTGRES_POOL_TIMEOUT, or hold connections "
            "for less time."
        )

    def detach_after_fork(self) -> None:
        """In a forked child: never use or close the inherited connections.

        Closing one would send the server a Terminate message on the socket the
        parent still uses, ending the parent's session. Marking the pool closed
        stops our own close(); psycopg2 itself skips the close when a connection
        is garbage-collected in a process other than the one that opened it.
        """
        self._closed = True


def _state_problem(conn: PooledConnection) -> str | None:
    if conn.closed:
        return "closed"
    if conn.info.transaction_status != _IDLE:
        return "not idle"
    return None


def _has_unread_data(conn: PooledConnection) -> bool:
    """An idle connection with bytes waiting was told something by the server:
    after pg_terminate_backend or a server shutdown, that is a FATAL and EOF.
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _commit(conn: PooledConnection) -> None:
    """Commit, unless a statement failed inside the block and the caller caught its error:
    PostgreSQL then answers COMMIT with a rollback, and the block's writes would be lost
    without a word."""
    if conn.info.transaction_status == _IN_ERROR:
        raise TransactionAborted(
            "the transaction failed inside the block and was rolled back: a statement in it "
            "raised an error that was caught, so PostgreSQL ignored everything after it and "
            "kept nothing the block wrote. Let the error propagate, or wrap a statement that "
            "may fail in a savepoint (SAVEPOINT s ... ROLLBACK TO SAVEPOINT s)."
        )
    conn.commit()


def _rollback_quietly(conn: PooledConnection) -> None:
    """Roll back; if that fails too, log it and let the caller's first error stand."""
    if conn.closed:
        return
    try:
        conn.rollback()
    except Exception as exc:
        logger.warning("rollback failed (%s); the connection will be discarded", type(exc).__name__)


def _unavailable(settings: PostgresSettings, exc: psycopg2.OperationalError) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {settings.describe()}: {first_line(exc)}. "
        "Check that the server is running and reachable and that POSTGRES_HOST, POSTGRES_PORT, "
        "POSTGRES_USER and POSTGRES_PASSWORD are right; the next call will try again."
    )


# Every pool open in this process, so a fork can neutralise the child's copies.
_live_pools: weakref.WeakSet[SyncConnectionPool] = weakref.WeakSet()


class PostgreSQLSyncConnectionManager:
    """The process-wide pool: initialize, get_connection, execute_query, stats, close.

    All methods are class methods: a Celery worker process has exactly one pool.
    ``get_connection()`` before ``initialize()`` opens the pool from the
    environment (the path for ``--pool=solo`` and ``--pool=threads``, where
    ``worker_process_init`` never fires). After ``close()``, use raises
    ``PoolClosed`` until ``initialize()`` is called again.
    """

    _pool: SyncConnectionPool | None = None
    _closed_explicitly = False
    _lock = threading.Lock()

    @classmethod
    def initialize(cls, settings: PostgresSettings | None = None) -> SyncConnectionPool:
        """Open this process's pool (settings default to ``PostgresSettings.from_env()``).

        Calling it again while a pool is open returns that pool unchanged unless
        ``settings`` differ, in which case the old pool is closed and a new one opened.
        """
        settings = settings or PostgresSettings.from_env()
        with cls._lock:
            pool = cls._own_pool()
            if pool is not None and not pool.closed and pool.settings == settings:
                return pool
            if pool is not None:
                pool.close()
            cls._pool = SyncConnectionPool(settings)
            cls._closed_explicitly = False
            return cls._pool

    @classmethod
    def pool(cls) -> SyncConnectionPool:
        """This process's open pool, opening it from the environment on first use."""
        pool = cls._pool
        if pool is not None and pool.owner_pid == os.getpid() and not pool.closed:
            return pool
        with cls._lock:
            pool = cls._own_pool()
            if pool is not None and not pool.closed:
                return pool
            if cls._closed_explicitly:
                raise PoolClosed(
                    "the PostgreSQL pool of this process was closed: call "
                    "PostgreSQLSyncConnectionManager.initialize() to open it again."
                )
            cls._pool = SyncConnectionPool(PostgresSettings.from_env())
            return cls._pool

    @classmethod
    def get_connection(cls):  # -> ContextManager[PooledConnection]
        """A connection in one transaction: commit on success, rollback on error."""
        return cls.pool().connection()

    @classmethod
    def execute_query(
        cls,
        sql: Any,
        params: Any = None,
        fetch_one: bool = False,
        fetch_all: bool = False,
    ) -> Any:
        """Run one statement in its own transaction.

        Returns the first row (a dict, or None) with ``fetch_one``, all rows (dicts)
        with ``fetch_all``, otherwise the number of rows affected.
        """
        with cls.get_connection() as conn:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                if fetch_one:
                    return cur.fetchone()
                if fetch_all:
                    return cur.fetchall()
                return cur.rowcount

    @classmethod
    def stats(cls) -> dict[str, int]:
        """The pool's counters; a not-yet-opened pool reports zeros."""
        pool = cls._own_pool()
        if pool is None:
            return {"pid": os.getpid(), "pool_size": 0, "pool_available": 0}
        return pool.stats()

    @classmethod
    def settings(cls) -> PostgresSettings:
        return cls.pool().settings

    @classmethod
    def close(cls) -> None:
        """Close this process's pool. Idempotent; later use raises ``PoolClosed``."""
        with cls._lock:
            pool = cls._own_pool()
            cls._pool = None
            cls._closed_explicitly = True
        if pool is not None:
            pool.close()

    @classmethod
    def _own_pool(cls) -> SyncConnectionPool | None:
        """The pool if this process opened it; an inherited one is forgotten, never closed."""
        pool = cls._pool
        if pool is not None and pool.owner_pid != os.getpid():
            pool.detach_after_fork()
            cls._pool = None
            return None
        return pool

    @classmethod
    def _after_fork_in_child(cls) -> None:
        cls._lock = threading.Lock()  # the parent may have held it at fork time
        cls._closed_explicitly = False
        for pool in list(_live_pools):
            pool.detach_after_fork()
        _live_pools.clear()
        cls._pool = None


os.register_at_fork(after_in_child=PostgreSQLSyncConnectionManager._after_fork_in_child)
