"""Leases: a lock that outlives transactions, for work that spans many of them, with a
fence that keeps a holder who lost its lease from committing anything more.

A transaction-level advisory lock held for a whole LightRAG ingest keeps its
transaction, and so a server connection, open all along. Behind PgBouncer in
transaction mode, N such ingests pin N server connections and then starve their own
work once the server pool has no more (seen with two worker processes and
``default_pool_size = 2``: every task hung); a server's
``idle_in_transaction_session_timeout`` would also end them midway. A lease is a row
instead: taking, renewing and giving it back are each one short statement.

The holder renews its lease every ``ttl / 3`` seconds from a thread. A holder that stops
renewing (it died, or it is paused: a long GC pause, a frozen VM, SIGSTOP) holds it until
it expires; then another may take it. Two things make that safe:

- **Identity.** A holder is ``host:pid:boot id:pid namespace:nonce``. A waiter takes over
  a live-looking lease at once only when it is certain the holder is gone: same boot id
  and same PID namespace (so the pid means the same process), and no such process. A
  holder of another host, or of another container with the same hostname, is waited for.
  A process also takes over a lease of its own that it could not give back.
- **Fencing.** A paused holder wakes up still believing it holds the lease (Kleppmann,
  "How to do distributed locking"). A lease held with ``fence=scope`` is the fence of
  that scope in this process: every store write in the scope (``Mode.WRITE`` and
  ``Mode.TRANSACTION`` cursors) ends its transaction with ``SELECT <fence function>
  (lease, holder); COMMIT`` in one round trip. The function locks the lease row FOR SHARE
  and raises unless the row is still this holder's and unexpired, so a takeover (which
  updates the row) waits for a write that passed the check, and any write checked after
  the takeover rolls back with ``LeaseLost``. ``hold_lease`` raises ``LeaseLost`` at the
  end of a block whose lease was lost, so the task fails (and is retried) instead of
  reporting success.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from ..cursors import Manager, Mode, cursor
from ..errors import LeaseLost, LeaseTimeout
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import apply_ddl, function_exists, run_statements, table_exists

logger = logging.getLogger(__name__)

TABLE = "aperag_pg_leases"
FENCE_FUNCTION = "aperag_pg_lease_fence_v1"
FENCE_SIGNATURE = f"{FENCE_FUNCTION}(text,text)"
# Raised by the fence function; no class of PostgreSQL's own starts with "AP".
LEASE_LOST_SQLSTATE = "AP001"
DEFAULT_TTL = 60.0  # seconds a lease lives without renewal

_CREATE = (
    """
CREATE TABLE IF NOT EXISTS {table} (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
)
""",
    # FOR SHARE: a takeover's UPDATE of the row waits until the checking transaction ends.
    f"""
CREATE OR REPLACE FUNCTION {{function}}(lease_name text, lease_holder text)
RETURNS void LANGUAGE plpgsql AS $fence$
BEGIN
    PERFORM 1 FROM {{table}}
    WHERE name = lease_name AND holder = lease_holder AND expires_at > clock_timestamp()
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease % is no longer held by %', lease_name, lease_holder
            USING ERRCODE = '{LEASE_LOST_SQLSTATE}';
    END IF;
END
$fence$
""",
)
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
_FENCE_AND_COMMIT = "SELECT {function}(%s, %s); COMMIT"
_LIVE = """
SELECT name, holder FROM {table}
WHERE starts_with(name, %s) AND expires_at > clock_timestamp() ORDER BY name
"""

_ready_schemas: set[str] = set()  # where this process has seen the table and function
_held: set[str] = set()  # the holders of the leases this process holds now
_fences: dict[Hashable, Lease] = {}  # fence scope -> the lease this process holds for it
_fences_lock = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a process, named so that a waiter can tell for certain whether
    it is gone, plus a nonce that makes each hold unique (the fencing token)."""

    host: str
    pid: int
    boot_id: str  # the kernel's boot id: one per machine (or VM) and boot
    pid_namespace: str  # the inode of the PID namespace: one per container
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.boot_id}:{self.pid_namespace}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder ``text`` names; None for a format this version did not write."""
        parts = text.split(":")
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3], parts[4])

    @classmethod
    def of_this_process(cls) -> Holder:
        """A new hold by this process (a new nonce each time)."""
        return cls(socket.gethostname(), os.getpid(), *_machine(), uuid.uuid4().hex[:12])

    def certainly_gone(self) -> bool:
        """Whether this holder's process has ended, or is this process and no longer holds
        it (the database was away when it tried to give it back). False whenever it cannot
        be certain: another machine, another PID namespace, or an unknown one."""
        if "" in _machine() or (self.boot_id, self.pid_namespace) != _machine():
            return False
        if self.pid == os.getpid():
            return str(self) not in _held
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it exists, owned by another user
        return False


class Lease:
    """A held lease; ``lost`` turns true once it is known to be another holder's (a renewal
    or a fenced write found it taken, or it could not be given back)."""

    def __init__(self, name: str, holder: str, fence_and_commit: sql.Composed) -> None:
        self.name = name
        self.holder = holder
        self.lost = False
        self._fence_and_commit = fence_and_commit

    def commit(self, cur: Any) -> None:
        """End ``cur``'s transaction: commit only while this lease is still held here, else
        roll back and raise ``LeaseLost``. One round trip (the check rides with COMMIT)."""
        try:
            cur.execute(self._fence_and_commit, (self.name, self.holder))
        except psycopg2.Error as exc:
            if exc.pgcode != LEASE_LOST_SQLSTATE:
                raise
            self.lost = True
            raise LeaseLost(self._lost_message("this write was rolled back")) from None

    def _lost_message(self, what: str) -> str:
        return (
            f"lease {self.name!r} is no longer held by {self.holder}: it expired while this "
            "process did not renew it (paused, or cut off from the database) and may have "
            f"been taken by another holder; {what}. The task is retried; if it happens "
            "often, raise the lease TTL."
        )


@contextmanager
def hold_lease(
    name: str,
    ttl: float = DEFAULT_TTL,
    timeout: float | None = None,
    manager: Manager = PostgreSQLSyncConnectionManager,
    fence: Hashable | None = None,
) -> Iterator[Lease]:
    """Wait for the lease ``name``, hold it (renewed) while the block runs, give it back.

    ``timeout``: seconds to wait at most, then ``LeaseTimeout``; None waits as long as
    it takes, as a lock would. ``fence``: a scope (see ``fence_for``) whose store writes
    commit only while this lease is held. A block whose lease was lost meanwhile ends in
    ``LeaseLost``, even if the block itself ended normally.
    """
    statements = _statements(manager)
    lease = Lease(name, str(Holder.of_this_process()), statements["fence"])
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
        with _fencing(fence, lease):
            yield lease
    finally:
        stop.set()
        renewer.join()
        _held.discard(lease.holder)
        _release(lease, statements, manager)
    if lease.lost:
        raise LeaseLost(lease._lost_message("writes fenced by it after that were rolled back"))


def fence_for(scope: Hashable) -> Lease | None:
    """The lease this process holds as the fence of ``scope``, if any."""
    return _fences.get(scope)


@contextmanager
def _fencing(scope: Hashable | None, lease: Lease) -> Iterator[None]:
    if scope is None:
        yield
        return
    with _fences_lock:
        if scope in _fences:  # two holds of one lease never overlap: this is a bug
            raise RuntimeError(f"{scope!r} is already fenced by {_fences[scope].holder}")
        _fences[scope] = lease
    try:
        yield
    finally:
        with _fences_lock:
            _fences.pop(scope, None)


def current_holder(name: str, manager: Manager = PostgreSQLSyncConnectionManager) -> str | None:
    """Who holds lease ``name`` now (``host:pid:boot id:pid namespace:nonce``), None when
    nobody does."""
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
    return [(name, int(holder.split(":")[1])) for name, holder in cur.fetchall()]


def ensure_lease_table(manager: Manager = PostgreSQLSyncConnectionManager) -> None:
    """Create the lease table and its fence function unless both exist."""
    schema = manager.settings().schema
    names = {
        "table": sql.Identifier(schema, TABLE),
        "function": sql.Identifier(schema, FENCE_FUNCTION),
    }
    apply_ddl(
        "the lease table and its fence function",
        schema,
        lambda cur: lease_objects_exist(cur, schema),
        lambda cur: run_statements(cur, [sql.SQL(text).format(**names) for text in _CREATE]),
        manager,
    )
    _ready_schemas.add(schema)


def lease_objects_exist(cur: Any, schema: str) -> bool:
    """Whether the lease table and its fence function are both in ``schema``."""
    return table_exists(cur, schema, TABLE) and function_exists(cur, schema, FENCE_SIGNATURE)


def _statements(manager: Manager) -> dict[str, sql.Composed]:
    schema = manager.settings().schema
    if schema not in _ready_schemas:
        ensure_lease_table(manager)
    names = {
        "table": sql.Identifier(schema, TABLE),
        "function": sql.Identifier(schema, FENCE_FUNCTION),
    }
    return {
        key: sql.SQL(text).format(**names)
        for key, text in (
            ("take", _TAKE),
            ("holder", _HOLDER),
            ("renew", _RENEW),
            ("release", _RELEASE),
            ("fence", _FENCE_AND_COMMIT),
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
        dead = row[0] if row is not None and _certainly_gone(row[0]) else None
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


def _certainly_gone(holder: str) -> bool:
    parsed = Holder.parse(holder)
    return parsed is not None and parsed.certainly_gone()


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
            if cur.rowcount == 0:  # another holder has it (or it was cleared): ours is gone
                lease.lost = True
    except Exception as exc:  # it expires by itself
        logger.warning(
            "lease %s: could not give it back (%s); it expires by itself",
            lease.name,
            type(exc).__name__,
        )


@functools.cache
def _machine() -> tuple[str, str]:
    """(boot id, PID namespace) of this process; "" where unknown (not Linux), and then no
    holder is ever certainly gone: leases wait for expiry."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot_id = file.read().strip().replace(":", "")
    except OSError:
        boot_id = ""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        namespace = ""
    return boot_id, "".join(ch for ch in namespace if ch.isdigit())
