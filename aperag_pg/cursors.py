"""The one way to get a cursor on the process pool: say how the work runs, get a cursor.

Every layer above the manager (stores, the checkpointer, the DDL runner, tasks) takes
its cursors from ``cursor()``, usually through one thin method of its own that adds its
row type or error messages. Nothing else sets autocommit, isolation or BEGIN/COMMIT.
The pool puts every connection back as it was opened when it comes back.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .errors import SchemaError, first_line
from .manager import PostgreSQLSyncConnectionManager
from .pool import raise_if_aborted

Manager = type[PostgreSQLSyncConnectionManager]


class Fence(Protocol):
    """What a fenced write ends with instead of COMMIT (``leases.Lease``)."""

    def commit(self, cur: Any) -> None:
        """Commit ``cur``'s open transaction, or roll it back and raise."""


class Mode(enum.Enum):
    """How a block's statements run."""

    # Each statement is its own transaction: one write, or reads that under READ
    # COMMITTED see committed data either way. Saves the BEGIN and COMMIT round trips.
    AUTOCOMMIT = "autocommit"
    # One write statement as its own transaction: AUTOCOMMIT, except under a writer's
    # fence (``leases.py``), where it commits only while the writer's lease is held.
    WRITE = "write"
    # One read-write transaction: committed when the block ends, rolled back on error.
    TRANSACTION = "transaction"
    # One REPEATABLE READ transaction: every statement sees the same data (a traversal,
    # a prune that must not mix two states of a thread).
    SNAPSHOT = "snapshot"
    # The same, read only.
    READ_ONLY_SNAPSHOT = "read only snapshot"

    @classmethod
    def writes(cls, one_statement: bool) -> Mode:
        """A write's mode: one statement is a transaction of its own, more need one."""
        return cls.WRITE if one_statement else cls.TRANSACTION


# Transactions send their BEGIN with the first statement and COMMIT themselves: one round
# trip more than their statements, where psycopg2's own transaction costs two (BEGIN, and
# for a snapshot SET TRANSACTION too, then COMMIT). BEGIN ... ISOLATION LEVEL also leaves
# no session-level trace, unlike SET SESSION.
_BEGIN = {
    Mode.SNAPSHOT: "BEGIN ISOLATION LEVEL REPEATABLE READ; ",
    Mode.READ_ONLY_SNAPSHOT: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; ",
    Mode.TRANSACTION: "BEGIN; ",
    Mode.WRITE: "BEGIN; ",  # under a fence
}


@contextmanager
def cursor(
    manager: Manager = PostgreSQLSyncConnectionManager,
    mode: Mode = Mode.TRANSACTION,
    cursor_factory: type[psycopg2.extensions.cursor] | None = None,
    fence: Fence | None = None,
) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor on a pooled connection, its statements run as ``mode`` says.

    A block that ends normally after one of its statements failed (the caller caught
    the error) raises ``TransactionAborted`` instead of committing: PostgreSQL would
    keep nothing the block wrote. With a ``fence``, a writing block (``WRITE`` or
    ``TRANSACTION``) is one transaction that ``fence.commit`` ends (``leases.py``).
    """
    factory: type = cursor_factory or psycopg2.extensions.cursor
    if fence is None or mode not in (Mode.TRANSACTION, Mode.WRITE):
        fence = None
    with manager.get_connection() as conn:
        conn.autocommit = True  # the pool turns it off again at checkin
        if mode is Mode.AUTOCOMMIT or (mode is Mode.WRITE and fence is None):
            with conn.cursor(cursor_factory=factory) as cur:
                yield cur
            return
        with conn.cursor(cursor_factory=_begins_with_first_statement(factory)) as cur:
            cur.begin = _BEGIN[mode]
            yield cur  # on an error the pool rolls back what BEGIN started
            if cur.begun:
                raise_if_aborted(conn)
                if fence is None:
                    cur.execute("COMMIT")
                else:
                    fence.commit(cur)


# What the mixin below extends, for the type checker; at run time it is put in front of
# the cursor class it is given (_begins_with_first_statement).
if TYPE_CHECKING:
    from psycopg2.extensions import cursor as _Cursor
else:
    _Cursor = object


class _BeginsWithFirstStatement(_Cursor):
    """A cursor mixin that sends ``begin`` in front of its first statement."""

    begin = ""
    begun = False

    def execute(self, query: Any, vars: Any = None) -> None:
        if not self.begun:
            if isinstance(query, bytes):  # as psycopg2.extras.execute_values sends it
                query = self.begin.encode() + query
            else:
                query = self.begin + (query if isinstance(query, str) else query.as_string(self))
            self.begun = True
        super().execute(query, vars)

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> None:
        self._begin_alone()  # COPY cannot share a round trip with BEGIN
        super().copy_expert(sql, file, size)

    def executemany(self, query: Any, vars_list: Any) -> None:
        self._begin_alone()
        super().executemany(query, vars_list)

    def _begin_alone(self) -> None:
        if not self.begun:
            super().execute(self.begin)
            self.begun = True


@functools.cache
def _begins_with_first_statement(factory: type) -> type:
    return type(f"Snapshot{factory.__name__}", (_BeginsWithFirstStatement, factory), {})


class DictRowCursor(psycopg2.extensions.cursor):
    """A cursor whose rows are plain dicts. psycopg2's RealDictCursor fills each row key
    by key in Python, which for a page of rows costs more than the query itself. (Its
    fetch methods return dicts where the base class's return tuples, as RealDictCursor's
    do: the overrides the type checker is told to allow.)
    """

    def fetchone(self) -> dict[str, Any] | None:  # type: ignore[override]
        row = super().fetchone()
        return None if row is None else dict(zip(self._names(), row, strict=True))

    def fetchmany(self, size: int | None = None) -> list[dict[str, Any]]:  # type: ignore[override]
        rows = super().fetchmany(size) if size is not None else super().fetchmany()
        return self._dicts(rows)

    def fetchall(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self._dicts(super().fetchall())

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        return iter(self.fetchall())

    def _names(self) -> list[str]:
        return [column.name for column in self.description or ()]

    def _dicts(self, rows: list[tuple]) -> list[dict[str, Any]]:
        names = self._names()
        return [dict(zip(names, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class MissingTables:
    """What a wing's cursor says when its tables (or functions) are not there yet: the
    objects, and the call that makes them."""

    what: str  # e.g. "the LangGraph store tables"
    fix: str  # e.g. "call PGSyncStore.setup() once"

    @contextmanager
    def explained(self, schema: str) -> Iterator[None]:
        """Turn "no such table / function" into SchemaError naming the fix."""
        try:
            yield
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedFunction) as exc:
            raise SchemaError(
                f"{self.what} are missing in schema {schema!r} ({first_line(exc)}). "
                f"Fix: {self.fix}."
            ) from exc
