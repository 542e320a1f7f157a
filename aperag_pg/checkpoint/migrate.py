"""Creates and upgrades the checkpoint tables and the saver's functions, under an advisory lock.

The version numbers recorded in ``checkpoint_migrations`` are those of
langgraph-checkpoint-postgres, so ``PostgresSaver.setup()`` and ours each find the
other's tables up to date; our functions are not versions there (upstream would
skip its own next migration), they are checked by name. Unlike
``PostgresSaver.setup()`` this needs no autocommit connection: everything runs in
one transaction, and concurrent callers (every worker process at start) wait for
the first and then find nothing to do. Nothing depends on ``search_path``.
"""

from __future__ import annotations

import logging

from psycopg2 import sql as pgsql

from .. import locks
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import create_schema_if_permitted, privilege_errors_explained
from . import sql

logger = logging.getLogger(__name__)

LATEST_VERSION = len(sql.MIGRATIONS) - 1


def setup_checkpoint_tables(
    schema: str, manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager
) -> list[int]:
    """Apply every checkpoint migration not yet applied in ``schema`` and (re)create the
    saver's functions; return the migration versions applied."""
    with privilege_errors_explained(schema, "the LangGraph checkpoint tables", manager):
        if _up_to_date(schema, manager):
            return []
        return _migrate(schema, manager)


def _up_to_date(schema: str, manager: type[PostgreSQLSyncConnectionManager]) -> bool:
    """Whether tables and functions are all there, read without the lock (the common case).

    A version above ours means a newer langgraph-checkpoint-postgres migrated the
    tables; that is left alone.
    """
    with manager.get_connection() as conn, conn.cursor() as cur:
        table = pgsql.Identifier(schema, sql.MIGRATIONS_TABLE).as_string(conn)
        functions = [f"{sql.quote_schema(conn, schema)}.{f}" for f in sql.FUNCTION_SIGNATURES]
        cur.execute(sql.SCHEMA_STATE, (table, functions))
        has_table, has_functions = cur.fetchone()
        if not has_table or not all(has_functions):
            return False
        cur.execute(sql.render(sql.SELECT_MIGRATION_VERSION, conn, schema))
        current = cur.fetchone()[0]
        return current is not None and current >= LATEST_VERSION


def _migrate(schema: str, manager: type[PostgreSQLSyncConnectionManager]) -> list[int]:
    applied: list[int] = []
    with manager.get_connection() as conn, conn.cursor() as cur:
        locks.hold_ddl_lock(cur)  # the package's one DDL lock: no first user races another
        create_schema_if_permitted(cur, schema)
        cur.execute(sql.render(sql.MIGRATIONS[0], conn, schema))
        cur.execute(sql.render(sql.SELECT_MIGRATION_VERSION, conn, schema))
        current = cur.fetchone()[0]
        start = 0 if current is None else current + 1
        for version in range(start, len(sql.MIGRATIONS)):
            cur.execute(sql.render(sql.MIGRATIONS[version], conn, schema))
            cur.execute(sql.render(sql.INSERT_MIGRATION_VERSION, conn, schema), (version,))
            applied.append(version)
        for statement in sql.CREATE_FUNCTIONS:  # idempotent; serialized by the lock
            cur.execute(sql.render(statement, conn, schema))
    if applied:
        logger.info("schema %s: applied checkpoint migrations %s", schema, applied)
    return applied
