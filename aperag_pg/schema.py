"""The one DDL runner: every schema, table, index and extension of the package is made
by ``apply_ddl``, under the one DDL lock (``locks.hold_ddl_lock``).

Every table is created as ``<schema>.<table>``: nothing depends on ``search_path``,
so this also works behind PgBouncer in transaction mode and in a dedicated
schema on PostgreSQL 15+, where ``public`` is not writable by ordinary roles.
Applying is idempotent and safe when many worker processes start at once: the
first one takes the lock and creates, the others wait and find nothing to do.
Where an object has versions (the checkpoint tables), its ``create`` step reads and
records them, inside the same locked transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import psycopg2.errors
from psycopg2 import sql

from . import locks
from .cursors import Manager, Mode, cursor
from .errors import SchemaPrivilegeError, first_line
from .manager import PostgreSQLSyncConnectionManager

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PRIVILEGES = """
SELECT current_user,
       current_database(),
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s),
       has_database_privilege(current_database(), 'CREATE'),
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)
            THEN has_schema_privilege(%(schema)s, 'CREATE') END
"""
_SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
_TABLE_EXISTS = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL"
_FUNCTION_EXISTS = "SELECT to_regprocedure(format('%%I.%%s', %s::text, %s::text)) IS NOT NULL"


def apply_ddl(
    what: str,
    schema: str | None,
    is_done: Callable[[Any], bool],
    create: Callable[[Any], T],
    manager: Manager = PostgreSQLSyncConnectionManager,
) -> T | None:
    """Make ``what`` with ``create(cursor)`` unless ``is_done(cursor)``; return what
    ``create`` returned, or None when there was nothing to do.

    The check runs first without the lock: the common case (already there) costs one
    catalog read. Otherwise one transaction holds the DDL lock, creates ``schema`` if it
    is given and missing, checks again (another process may have finished while this one
    waited) and runs ``create``; a failure leaves nothing half made. A missing privilege
    raises ``SchemaPrivilegeError`` naming ``what`` and the GRANT that fixes it.
    """
    explained = privilege_errors_explained(schema, what, manager) if schema else nullcontext()
    with explained:
        with cursor(manager, Mode.AUTOCOMMIT) as cur:
            if is_done(cur):
                return None
        with cursor(manager) as cur:
            locks.hold_ddl_lock(cur)
            if schema is not None:
                create_schema_if_permitted(cur, schema)
            if is_done(cur):
                return None
            return create(cur)


def ensure_schema(
    schema: str | None = None, manager: Manager = PostgreSQLSyncConnectionManager
) -> None:
    """Create ``schema`` (default: POSTGRES_SCHEMA) if it is missing, at worker start, so a
    role that may not create it fails there, with the fix, rather than in its first task.
    An existing schema needs no privilege beyond USAGE here."""
    schema = schema or manager.settings().schema
    apply_ddl(
        "aperag_pg's tables", schema, lambda cur: schema_exists(cur, schema), _nothing, manager
    )


def schema_exists(cur: Any, schema: str) -> bool:
    cur.execute(_SCHEMA_EXISTS, (schema,))
    return cur.fetchone()[0]


def table_exists(cur: Any, schema: str, table: str) -> bool:
    cur.execute(_TABLE_EXISTS, (schema, table))
    return cur.fetchone()[0]


def function_exists(cur: Any, schema: str, signature: str) -> bool:
    """Whether ``schema`` has the function ``signature`` (``name(argtype,...)``)."""
    cur.execute(_FUNCTION_EXISTS, (schema, signature))
    return cur.fetchone()[0]


def run_statements(cur: Any, statements: Sequence[sql.Composable]) -> None:
    for statement in statements:
        cur.execute(statement)


def _nothing(_cur: Any) -> None:
    return None  # apply_ddl creates the schema itself


@contextmanager
def privilege_errors_explained(schema: str, what: str, manager: Manager) -> Iterator[None]:
    """Turn the server's "permission denied" into SchemaPrivilegeError with the GRANT to run."""
    try:
        yield
    except psycopg2.errors.InsufficientPrivilege as exc:
        role = manager.settings().user
        raise SchemaPrivilegeError(
            f"role {role!r} may not create or use {what} in schema {schema!r}: "
            f"{first_line(exc)}. Fix: run as the role that owns the tables, or have an "
            f'administrator GRANT USAGE, CREATE ON SCHEMA "{schema}" and SELECT, INSERT, '
            f'UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}", or set '
            "POSTGRES_SCHEMA to a schema the role owns."
        ) from exc


def create_schema_if_permitted(cur, schema: str) -> None:
    """Create ``schema`` if missing; raise SchemaPrivilegeError naming what the role lacks."""
    cur.execute(_PRIVILEGES, {"schema": schema})
    role, database, exists, can_create_schema, can_create_in_schema = cur.fetchone()
    if not exists:
        if not can_create_schema:
            raise SchemaPrivilegeError(
                f"schema {schema!r} does not exist and role {role!r} lacks the CREATE privilege "
                f"on database {database!r} needed to create it. Fix: have an administrator run "
                f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}", or GRANT CREATE ON DATABASE '
                f'"{database}" TO "{role}", or set POSTGRES_SCHEMA to a schema the role owns.'
            )
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        return
    if not can_create_in_schema:
        hint = (
            " PostgreSQL 15 and later no longer let every role create tables in 'public'."
            if schema == "public"
            else ""
        )
        raise SchemaPrivilegeError(
            f"role {role!r} lacks the CREATE privilege on schema {schema!r}, needed to create "
            f"aperag_pg's tables.{hint} Fix: set POSTGRES_SCHEMA to a schema the role owns or "
            "may create, or have an administrator run "
            f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}".'
        )


def in_schema(template: str | sql.SQL, schema: str, **parts: sql.Composable) -> sql.Composed:
    """``template`` with ``{schema}`` as the quoted schema name and each named part (a
    ``psycopg2.sql`` composable: names, fixed fragments; values are ``%s`` parameters) put
    in, in one pass. THE renderer of every wing's statements."""
    statement = sql.SQL(template) if isinstance(template, str) else template
    return statement.format(schema=sql.Identifier(schema), **parts)
