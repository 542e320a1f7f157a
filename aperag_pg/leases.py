"""Leases: a lock that outlives transactions, for work that spans many of them.

A transaction-level advisory lock held for a whole LightRAG ingest keeps its
transaction, and so a server connection, open all along. Behind PgBouncer in
transaction mode, N such ingests pin N server connections and then starve their own
work once the server pool has no more (seen with two worker processes and
``default_pool_size = 2``: every task hung); a server's
``idle_in_transaction_session_timeout`` would also end them midway. A lease is a row
instead: taking, renewing and giving it back are each one short statement.

The holder renews its lease every ``ttl / 3`` seconds from a thread. A holder that dies
without giving it back holds it until it expires, except that a waiter on the same
host takes it over at once when the holder's process is gone (a crashed worker's task
is usually redelivered on its host), and a process takes over a lease of its own that
it could not give back (the database was away at that moment).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg2 import sql

from .cursors import Manager, Mode, cursor
from .errors import LeaseTimeout
from .manager import PostgreSQLSyncConnectionManager
from .schema import apply_ddl, table_exists

logger = logging.getLogger(__name__)

TABLE = "aperag_pg_leases"
DEFAULT_TTL = 60.0  # seconds a lease lives without renewal

_CREATE = """
CREATE TABLE IF NOT EXISTS {table} (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
)
"""
# Taken when free, expired, or held by the given dead holder; RETURNING says whether.
_TAKE = """
INSERT INTO {table} AS lease (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE lease.expires_at < clock_timestamp() OR lease.holder = %(dead)s
RETURNING holder
"""
_HOLDER = "SELECT holder FROM {table} WHERE name = %s"
_RENEW = """
UPDATE {table} SET expires_at = clock_timestamp() + make_interval(secs => %s)
WHERE name = %s AND holder = %s
"""
_RELEASE = "DELETE FROM {table} WHERE name = %s AND holder = %s"
_LIVE = """
SELECT name, holder FROM {table}
WHERE starts_with(name, %s) AND expires_at > clock_timestamp() ORDER BY name
"""

_ready_schemas: set[str] = set()  # where this process has seen the table
_held: set[str] = set()  # the holders of the leases this process holds now


class Lease:
    """A held lease; ``lost`` turns true if a renewal found it taken by someone else."""

    def __init__(self, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        self.lost = False


@contextmanager
def hold_lease(
    name: str,
    ttl: float = DEFAULT_TTL,
    timeout: float | None = None,
    manager: Manager = PostgreSQLSyncConnectionManager,
) -> Iterator[Lease]:
    """Wait for the lease ``name``, hold it (renewed) while the block runs, give it back.

    ``timeout``: seconds to wait at most, then ``LeaseTimeout``; None waits as long as
    it takes, as a lock would.
    """
    statements = _statements(manager)
    lease = Lease(name, f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    _held.add(lease.holder)  # before taking: no thread of ours may think it orphaned
    try:
        _take(lease, ttl, timeout, statements, manager)
    except BaseException:
        _held.discard(lease.holder)
        raise
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_until,
        args=(stop, lease, ttl, statements, manager),
        name=f"lease-renewer:{name[:40]}",
        daemon=True,
    )
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        _held.discard(lease.holder)
        _release(lease, statements, manager)


def current_holder(name: str, manager: Manager = PostgreSQLSyncConnectionManager) -> str | None:
    """Who holds lease ``name`` now (``host:pid:tag``), None when nobody does."""
    statements = _statements(manager)
    with cursor(manager, Mode.AUTOCOMMIT) as cur:
        cur.execute(statements["holder"], (name,))
        row = cur.fetchone()
    return None if row is None else row[0]


def live_holders(cur: Any, prefix: str, schema: str = "public") -> list[tuple[str, int]]:
    """(name, holder pid) of the unexpired leases whose name starts with ``prefix``, read
    on any cursor (an observer's own connection); empty before the table exists."""
    if not table_exists(cur, schema, TABLE):
        return []
    cur.execute(
        sql.SQL(_LIVE).format(table=sql.Identifier(schema, TABLE)),
        (prefix,),
    )
    return [(name, int(holder.rsplit(":", 2)[1])) for name, holder in cur.fetchall()]


def ensure_lease_table(manager: Manager = PostgreSQLSyncConnectionManager) -> None:
    schema = manager.settings().schema
    table = sql.Identifier(schema, TABLE)
    apply_ddl(
        "the lease table",
        schema,
        lambda cur: table_exists(cur, schema, TABLE),
        lambda cur: cur.execute(sql.SQL(_CREATE).format(table=table)),
        manager,
    )
    _ready_schemas.add(schema)


def _statements(manager: Manager) -> dict[str, sql.Composed]:
    schema = manager.settings().schema
    if schema not in _ready_schemas:
        ensure_lease_table(manager)
    table = sql.Identifier(schema, TABLE)
    return {
        key: sql.SQL(text).format(table=table)
        for key, text in (
            ("take", _TAKE),
            ("holder", _HOLDER),
            ("renew", _RENEW),
            ("release", _RELEASE),
        )
    }


def _take(
    lease: Lease, ttl: float, timeout: float | None, statements: dict, manager: Manager
) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.05
    dead = None
    while True:
        with cursor(manager, Mode.AUTOCOMMIT) as cur:
            params = {"name": lease.name, "holder": lease.holder, "ttl": ttl, "dead": dead}
            cur.execute(statements["take"], params)
            if cur.fetchone() is not None:
                return
            cur.execute(statements["holder"], (lease.name,))
            row = cur.fetchone()
        dead = row[0] if row is not None and _gone_from_this_host(row[0]) else None
        if dead is not None:
            logger.info("lease %s: its holder %s is gone; taking it over", lease.name, dead)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"lease {lease.name!r} is still held by {row[0] if row else 'nobody'} after "
                f"{timeout:g} s; it frees when that holder finishes, or {ttl:g} s after it "
                "stopped renewing it."
            )
        time.sleep(pause)  # waiting for another process's work: no signal to wait on
        pause = min(pause * 2, 1.0)


def _renew_until(
    stop: threading.Event, lease: Lease, ttl: float, statements: dict, manager: Manager
) -> None:
    while not stop.wait(ttl / 3):
        try:
            with cursor(manager, Mode.AUTOCOMMIT) as cur:
                cur.execute(statements["renew"], (ttl, lease.name, lease.holder))
                renewed = cur.rowcount == 1
        except Exception as exc:  # the next round tries again until the lease expires
            logger.warning("lease %s: renewal failed (%s)", lease.name, type(exc).__name__)
            continue
        if not renewed:
            lease.lost = True
            logger.error(
                "lease %s expired and was taken by another holder while %s worked under it",
                lease.name,
                lease.holder,
            )
            return


def _release(lease: Lease, statements: dict, manager: Manager) -> None:
    try:
        with cursor(manager, Mode.AUTOCOMMIT) as cur:
            cur.execute(statements["release"], (lease.name, lease.holder))
    except Exception as exc:  # it expires by itself
        logger.warning(
            "lease %s: could not give it back (%s); it expires by itself",
            lease.name,
            type(exc).__name__,
        )


def _gone_from_this_host(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:tag``) is a process of this host that has ended, or
    an earlier hold of this process that it could not give back (the database was away
    when it tried)."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    if int(parts[1]) == os.getpid():
        return holder not in _held
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, owned by another user
    return False
