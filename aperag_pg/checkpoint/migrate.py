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
from typing import Any

from psycopg2 import sql as pgsql

from ..cursors import Manager
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import apply_ddl
from . import sql
from .functions import CREATE_FUNCTIONS, FUNCTION_SIGNATURES

logger = logging.getLogger(__name__)

LATEST_VERSION = len(sql.MIGRATIONS) - 1


def setup_checkpoint_tables(
    schema: str, manager: Manager = PostgreSQLSyncConnectionManager
) -> list[int]:
    """Apply every checkpoint migration not yet applied in ``schema`` and (re)create the
    saver's functions, through the package's one DDL runner; return the versions applied."""
    applied = apply_ddl(
        "the LangGraph checkpoint tables",
        schema,
        lambda cur: _up_to_date(cur, schema),
        lambda cur: _migrate(cur, schema),
        manager,
    )
    if applied:
        logger.info("schema %s: applied checkpoint migrations %s", schema, applied)
    return applied or []


def _up_to_date(cur: Any, schema: str) -> bool:
    """Whether tables and functions are all there.

    A version above ours means a newer langgraph-checkpoint-postgres migrated the
    tables; that is left alone.
    """
    conn = cur.connection
    table = pgsql.Identifier(schema, sql.MIGRATIONS_TABLE).as_string(conn)
    functions = [f"{sql.quote_schema(conn, schema)}.{f}" for f in FUNCTION_SIGNATURES]
    cur.execute(sql.SCHEMA_STATE, (table, functions))
    has_table, has_functions = cur.fetchone()
    if not has_table or not all(has_functions):
        return False
    cur.execute(sql.rendered(conn, schema, sql.SELECT_MIGRATION_VERSION))
    current = cur.fetchone()[0]
    return current is not None and current >= LATEST_VERSION


def _migrate(cur: Any, schema: str) -> list[int]:
    def run(template: str, params: Any = None) -> None:
        cur.execute(sql.rendered(cur.connection, schema, template), params)

    run(sql.MIGRATIONS[0])
    run(sql.SELECT_MIGRATION_VERSION)
    current = cur.fetchone()[0]
    start = 0 if current is None else current + 1
    applied = []
    for version in range(start, len(sql.MIGRATIONS)):
        run(sql.MIGRATIONS[version])
        run(sql.INSERT_MIGRATION_VERSION, (version,))
        applied.append(version)
    for statement in CREATE_FUNCTIONS:  # idempotent; serialized by the lock
        run(statement)
    return applied
