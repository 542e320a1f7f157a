"""Every PostgreSQL advisory lock aperag_pg takes, named once.

All are two-key, transaction-level locks ``(namespace, hashtext(name))``: they end with
their transaction, so they are safe behind PgBouncer in transaction mode, and a crashed
process never leaves one behind. Each purpose has a namespace of its own, so no name in
one (a workspace called "pgvector", say) can block another.
"""

from __future__ import annotations

from typing import Any

SCHEMA = 0x61706731  # b"apg1": migrations of one schema (package and checkpointer)
TABLES = 0x61706732  # b"apg2": creating one store's table
VECTOR = 0x61706733  # b"apg3": CREATE EXTENSION vector, and one vector table's index
WORKSPACE_WRITER = 0x61706734  # b"apg4": the one LightRAG writer of a workspace

_XACT_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"


def hold_until_commit(cur: Any, namespace: int, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock ``name`` of ``namespace``."""
    cur.execute(_XACT_LOCK, (namespace, name))
