"""The pool: psycopg2's ``ThreadedConnectionPool`` made fit for a worker process.

``SyncConnectionPool`` puts psycopg2's pool behind a ``threading.Condition`` and adds
what psycopg2 lacks: callers wait (up to ``pool_timeout``) instead of failing at once,
broken, stale and altered connections are thrown away instead of handed out, and
counters are kept (``stats()``). A pool inherited through ``fork()`` is never used or
closed by the child. The process-wide pool is ``manager.PostgreSQLSyncConnectionManager``.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import os
import random
import select
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from .connect_errors import cannot_connect
from .errors import (
    PoolClosed,
    PoolError,
    PoolTimeout,
    TransactionAborted,
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


# stats() keys, named like psycopg_pool's get_stats().
POOL_MIN, POOL_MAX = "pool_min", "pool_max"
POOL_SIZE, POOL_AVAILABLE, POOL_IN_USE = "pool_size", "pool_available", "pool_in_use"
REQUESTS_NUM = "requests_num"
REQUESTS_WAITING = "requests_waiting"
REQUESTS_WAIT_MS = "requests_wait_ms"
REQUESTS_WAIT_P99_MS = "requests_wait_p99_ms"  # of the last WAITS_KEPT checkouts, 0 if none waited
REQUESTS_TIMEOUTS = "requests_timeouts"
CONNECTIONS_NUM = "connections_num"
CONNECTIONS_ERRORS = "connections_errors"
CONNECTIONS_LOST = "connections_lost"
CONNECTIONS_RECYCLED = "connections_recycled"
RETURNS_BAD = "returns_bad"
RETURNS_CHANGED = "returns_changed"
USAGE_MS = "usage_ms"


class Discard(enum.Enum):
    """Why a connection is closed instead of reused; the value is the counter it adds to."""

    LOST = CONNECTIONS_LOST  # broken, or the server ended the session
    RECYCLED = CONNECTIONS_RECYCLED  # past max_lifetime or max_idle
    CHANGED = RETURNS_CHANGED  # came back with a session setting changed by the caller
    BAD = RETURNS_BAD  # came back closed, mid-transaction, or failing RESET ALL


# The checkouts the p99 in stats() is taken over: the last WAITS_KEPT, so the figure
# follows the pool's recent load at constant memory. Only checkouts that waited are
# recorded (by their number); the others count as 0, so a checkout that finds a free
# slot records nothing and stats() sorts only the waits.
WAITS_KEPT = 4096

# Each connection lives max_lifetime times a share drawn from this range, so connections
# opened together (a pool starting, a burst) do not all expire together.
LIFETIME_SHARE = (0.95, 1.0)


def _p99_ms(waits: list[float], checkouts: int) -> int:
    """The nearest-rank p99 of ``checkouts`` checkout waits, of which ``waits`` (sorted)
    waited and the rest did not (0), rounded up to whole ms like the other wait counters."""
    if not checkouts:
        return 0
    rank = math.ceil(0.99 * checkouts) - (checkouts - len(waits))  # 1-based among waits
    return math.ceil(waits[rank - 1]) if rank > 0 else 0


class PooledConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that remembers when it was opened and last returned, its share
    of max_lifetime, and the session settings it was opened with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = self.idle_since = self.checked_out_at = time.monotonic()
        self.lifetime_share = random.uniform(*LIFETIME_SHARE)
        self.configured = reported_settings(self)

    def usable(self) -> bool:
        """Open and outside any transaction."""
        return not self.closed and self.info.transaction_status == _IDLE


def reported_settings(conn: psycopg2.extensions.connection) -> tuple[str | None, ...]:
    info = conn.info
    return tuple(info.parameter_status(name) for name in REPORTED_SETTINGS)


class _KeepIdleThreadedPool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's pool closes every returned connection once ``minconn`` are idle,
    so a pool with min < max would reconnect on almost every checkout under load.
    This one opens ``minconn`` at start but keeps up to ``maxconn`` idle; the
    manager trims idle ones by ``max_idle`` instead.

    psycopg2's private fields it touches, and why: ``minconn`` is raised after start
    (``_putconn`` reads it as "keep this many idle"); ``_connect`` is wrapped to count
    connections; ``_lock``, ``_pool`` (the idle list) and ``_used`` are read, and ``_pool``
    trimmed, under that lock, because the pool has no public way to list or drop idle
    connections.
    """

    # psycopg2's private fields (above), which its type stubs leave out
    _lock: threading.Lock
    _pool: list[PooledConnection]
    _used: dict[Any, PooledConnection]

    def __init__(self, minconn: int, maxconn: int, **kwargs: Any) -> None:
        self.opened = 0
        self.connect_errors = 0
        super().__init__(minconn, maxconn, **kwargs)
        self.minconn = maxconn  # read by _putconn as "keep this many idle"

    def _connect(self, key: Any = None) -> PooledConnection:
        try:
            conn = super()._connect(key)  # type: ignore[misc]  # private: not in the stubs
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
        self._counters: dict[str, float] = dict.fromkeys(
            (REQUESTS_NUM, REQUESTS_WAITING, REQUESTS_WAIT_MS, REQUESTS_TIMEOUTS, USAGE_MS)
            + tuple(reason.value for reason in Discard),
            0,
        )
        # (checkout number, ms) of the recent checkouts that waited
        self._recent_waits: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=WAITS_KEPT
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
            raise cannot_connect(settings.connection, exc) from exc
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
        """Counters named like psycopg_pool's ``get_stats()``, and the p99 of recent waits."""
        with self._cond:
            counters = {name: int(value) for name, value in self._counters.items()}
            in_use = self._in_use
            checkouts = int(self._counters[REQUESTS_NUM])
            oldest = checkouts - WAITS_KEPT
            waits = sorted(ms for number, ms in self._recent_waits if number > oldest)
        counters[REQUESTS_WAIT_P99_MS] = _p99_ms(waits, min(checkouts, WAITS_KEPT))
        idle = len(self._pool.idle_connections())
        return {
            POOL_MIN: self.settings.min_connections,
            POOL_MAX: self.settings.max_connections,
            POOL_SIZE: idle + in_use,
            POOL_AVAILABLE: idle,
            POOL_IN_USE: in_use,
            **counters,
            CONNECTIONS_NUM: self._pool.opened,
            CONNECTIONS_ERRORS: self._pool.connect_errors,
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
            self._counters[REQUESTS_NUM] += 1
            if self._in_use < self.settings.max_connections:
                self._in_use += 1
                return
            number = int(self._counters[REQUESTS_NUM])  # this checkout's
            started = time.monotonic()
            deadline = started + self.settings.pool_timeout
            self._counters[REQUESTS_WAITING] += 1
            try:
                while self._in_use >= self.settings.max_connections:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._counters[REQUESTS_TIMEOUTS] += 1
                        raise PoolTimeout(self._timeout_message())
                    self._cond.wait(remaining)
                    self._raise_if_closed()
                self._in_use += 1
            finally:
                waited_ms = (time.monotonic() - started) * 1000
                self._counters[REQUESTS_WAITING] -= 1
                self._counters[REQUESTS_WAIT_MS] += int(waited_ms)
                self._recent_waits.append((number, waited_ms))

    def _release_slot(self, used_ms: float = 0.0) -> None:
        with self._cond:
            self._in_use -= 1
            self._counters[USAGE_MS] += used_ms  # time the connection spent checked out
            self._cond.notify()

    def _usable_connection(self) -> PooledConnection:
        # Each pass consumes one idle connection, so this ends by opening a new one at worst.
        while True:
            try:
                # a PooledConnection: the pool was made with that connection_factory
                conn = cast(PooledConnection, self._pool.getconn())
            except psycopg2.OperationalError as exc:
                raise cannot_connect(self.settings.connection, exc) from exc
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
            problem = self._restore_session(conn) if conn.usable() else Discard.BAD
            if problem is None and self._too_old(conn):
                problem = Discard.RECYCLED
            if problem is None:
                conn.idle_since = time.monotonic()
                self._pool.putconn(conn)
            else:
                self._discard(conn, problem)
        finally:
            self._release_slot(used_ms)
        self._trim_idle()

    def _restore_session(self, conn: PooledConnection) -> Discard | None:
        """Give a returned connection back the session the pool configured, or say why it
        must be closed instead. The transaction characteristics psycopg2 keeps on the
        connection (read only, isolation, deferrable, autocommit) are put back without a
        round trip; a change of a reported setting (search_path, TimeZone, ...) means the
        caller ran SET: the connection is replaced."""
        if conn.autocommit:
            conn.autocommit = False
        if conn.readonly is not None or conn.isolation_level is not None or conn.deferrable:
            conn.set_session(isolation_level="default", readonly="default", deferrable="default")
        if reported_settings(conn) != conn.configured:
            return Discard.CHANGED
        if self.settings.reset_on_return:
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("RESET ALL")
                conn.autocommit = False
            except psycopg2.Error:
                return Discard.BAD
        return None

    # -- connection health -----------------------------------------------------

    def _problem_with(self, conn: PooledConnection) -> Discard | None:
        """Why an idle connection must not be handed out, or None if it is fine."""
        if not conn.usable() or _has_unread_data(conn):
            return Discard.LOST
        if self._too_old(conn) or self._idle_too_long(conn, time.monotonic()):
            return Discard.RECYCLED
        return None

    def _too_old(self, conn: PooledConnection) -> bool:
        lifetime = self.settings.max_lifetime * conn.lifetime_share
        return time.monotonic() - conn.opened_at > lifetime

    def _idle_too_long(self, conn: PooledConnection, now: float) -> bool:
        return now - conn.idle_since > self.settings.max_idle

    def _discard(self, conn: PooledConnection, why: Discard) -> None:
        with self._cond:
            self._counters[why.value] += 1
        logger.debug("discarding connection (%s) in pid %s", why.name, self.owner_pid)
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
                self._counters[Discard.RECYCLED.value] += len(stale)

    # -- messages --------------------------------------------------------------

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise PoolClosed(
                "the PostgreSQL pool is closed: call PostgreSQLSyncConnectionManager.initialize() "
                "to open it again."
            )

    def _timeout_message(self) -> str:
        waiting = self._counters[REQUESTS_WAITING] - 1
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


def _has_unread_data(conn: PooledConnection) -> bool:
    """An idle connection with bytes waiting was told something by the server:
    after pg_terminate_backend or a server shutdown, that is a FATAL and EOF.
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _commit(conn: PooledConnection) -> None:
    raise_if_aborted(conn)
    conn.commit()


def raise_if_aborted(conn: Any) -> None:
    """Refuse to commit when a statement failed inside the block and the caller caught its
    error: PostgreSQL then answers COMMIT with a rollback, and the block's writes would be
    lost without a word."""
    if conn.info.transaction_status == _IN_ERROR:
        raise TransactionAborted(
            "the transaction failed inside the block and was rolled back: a statement in it "
            "raised an error that was caught, so PostgreSQL ignored everything after it and "
            "kept nothing the block wrote. Let the error propagate, or wrap a statement that "
            "may fail in a savepoint (SAVEPOINT s ... ROLLBACK TO SAVEPOINT s)."
        )


def _rollback_quietly(conn: PooledConnection) -> None:
    """Roll back; if that fails too, log it and let the caller's first error stand. In
    autocommit, where psycopg2's rollback() does nothing, a transaction begun by hand
    (``cursors.Mode.SNAPSHOT``) gets a ROLLBACK statement."""
    if conn.closed:
        return
    try:
        if not conn.autocommit:
            conn.rollback()
        elif conn.info.transaction_status != _IDLE:
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
    except Exception as exc:
        logger.warning("rollback failed (%s); the connection will be discarded", type(exc).__name__)


# Every pool open in this process, so a fork can neutralise the child's copies.
_live_pools: weakref.WeakSet[SyncConnectionPool] = weakref.WeakSet()


def _detach_inherited_pools() -> None:
    """In a forked child: every pool the parent had open is never used or closed here."""
    for pool in list(_live_pools):
        pool.detach_after_fork()
    _live_pools.clear()


os.register_at_fork(after_in_child=_detach_inherited_pools)
