"""The process-wide pool: one ``SyncConnectionPool`` per process, behind class methods.

``PostgreSQLSyncConnectionManager`` opens this process's pool on ``initialize()`` (or
from the environment on first use) and closes it on ``close()``. A forked child never
uses the parent's pool; it opens its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg2.extras

from .errors import PoolClosed
from .pool import (
    CONNECTIONS_ERRORS,
    CONNECTIONS_LOST,
    POOL_AVAILABLE,
    POOL_SIZE,
    REQUESTS_TIMEOUTS,
    SyncConnectionPool,
)
from .settings import PostgresSettings


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

        Calling it again while a pool is open keeps that pool unless the connection or
        pool settings differ, in which case the old pool is closed and a new one opened.
        New storage settings alone (schema, workspace, vector index) are taken as they
        are: stores built from now on read them; the connections stay.
        """
        settings = settings or PostgresSettings.from_env()
        with cls._lock:
            pool = cls._own_pool()
            if pool is not None and not pool.closed and not pool.settings.reopens_pool(settings):
                pool.settings = settings  # the pool reads only the parts that are equal
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
            return {"pid": os.getpid(), POOL_SIZE: 0, POOL_AVAILABLE: 0}
        return pool.stats()

    @classmethod
    def trouble(cls) -> int:
        """Connections this process lost or could not open, and waits for one that timed
        out, so far: a rise across some work means the database gave trouble meanwhile."""
        stats = cls.stats()
        return sum(
            stats.get(key, 0) for key in (CONNECTIONS_LOST, CONNECTIONS_ERRORS, REQUESTS_TIMEOUTS)
        )

    @classmethod
    def settings(cls) -> PostgresSettings:
        """The settings of this process's pool; before it is open (or after ``close()``),
        the ones it would open with. Never opens the pool: building a store or a saver
        needs no connection."""
        pool = cls._own_pool()
        if pool is not None and not pool.closed:
            return pool.settings
        return PostgresSettings.from_env()

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
        cls._pool = None  # detached by the pool module's own fork hook


os.register_at_fork(after_in_child=PostgreSQLSyncConnectionManager._after_fork_in_child)
