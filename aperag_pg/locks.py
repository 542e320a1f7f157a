"""Every PostgreSQL advisory lock aperag_pg takes, named once: the DDL lock, and the
vector store's row locks.

It is a two-key, transaction-level lock ``(namespace, hashtext(name))``: it ends with its
transaction, so it is safe behind PgBouncer in transaction mode, and a crashed process
never leaves it behind. A lock that must outlive one transaction (a LightRAG workspace's
one writer) is a lease instead (``leases.py``).
"""

from __future__ import annotations

from typing import Any

DDL = 0x61706731  # b"apg1": every DDL statement of the package, one transaction at a time
# b"apg2": one vector row (schema, table, workspace, id), held by its upserts so that two
# writers of one id take turns (stores/vector.py; keys hashed there, taken in key order)
VECTOR_ROW = 0x61706732

_XACT_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_DDL_NAME = "ddl"


def hold_ddl_lock(cur: Any) -> None:
    """Wait for, then hold until the transaction ends, the one lock that all of the
    package's DDL runs under: CREATE SCHEMA, tables, indexes, the extension, migrations, in
    every schema. ``IF NOT EXISTS`` alone does not make two first users safe (both pass the
    check, then one fails on a catalog's unique index), and separate locks per kind of
    object would let a store and the checkpointer both create the same schema."""
    cur.execute(_XACT_LOCK, (DDL, _DDL_NAME))
