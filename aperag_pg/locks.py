"""Every PostgreSQL advisory lock aperag_pg takes, named once.

All are two-key, transaction-level locks ``(namespace, hashtext(name))``: they end with
their transaction, so they are safe behind PgBouncer in transaction mode, and a crashed
process never leaves one behind. Each purpose has a namespace of its own, so no name in
one (a workspace called "pgvector", say) can block another.
"""

from __future__ import annotations

from typing import Any

DDL = 0x61706731  # b"apg1": every DDL statement of the package, one transaction at a time
WORKSPACE_WRITER = 0x61706734  # b"apg4": the one LightRAG writer of a workspace

_XACT_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_DDL_NAME = "ddl"


def hold_ddl_lock(cur: Any) -> None:
    """Wait for, then hold until the transaction ends, the one lock that all of the
    package's DDL runs under: CREATE SCHEMA, tables, indexes, the extension, migrations, in
    every schema. ``IF NOT EXISTS`` alone does not make two first users safe (both pass the
    check, then one fails on a catalog's unique index), and separate locks per kind of
    object would let a store and the checkpointer both create the same schema."""
    cur.execute(_XACT_LOCK, (DDL, _DDL_NAME))


def hold_until_commit(cur: Any, namespace: int, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock ``name`` of ``namespace``."""
    cur.execute(_XACT_LOCK, (namespace, name))
