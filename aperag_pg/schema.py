"""The package's DDL as ordered migrations, applied once per schema under an advisory lock.

Every table is created as ``<schema>.<table>``: nothing depends on ``search_path``,
so this also works behind PgBouncer in transaction mode and in a dedicated
schema on PostgreSQL 15+, where ``public`` is not writable by ordinary roles.
Applying is idempotent and safe when many worker processes start at once: the
first one takes the lock and migrates, the others wait and find nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2.errors
from psycopg2 import sql

from . import locks
from .errors import SchemaPrivilegeError, first_line
from .manager import PostgreSQLSyncConnectionManager

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "aperag_pg_migrations"


@dataclass(frozen=True)
class Migration:
    """One step of the schema. ``statements`` use ``{schema}`` for the schema identifier."""

    version: int
    description: str
    statements: tuple[str, ...]

    def render(self, schema: str) -> list[sql.Composed]:
        return [sql.SQL(s).format(schema=sql.Identifier(schema)) for s in self.statements]


# The package's own migrations, in order. The store and checkpointer modules add theirs here.
MIGRATIONS: tuple[Migration, ...] = ()

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
_SELECT_APPLIED = "SELECT version FROM {schema}.{table}"
_INSERT_APPLIED = "INSERT INTO {schema}.{table} (version, description) VALUES (%s, %s)"
_PRIVILEGES = """
SELECT current_user,
       current_database(),
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s),
       has_database_privilege(current_database(), 'CREATE'),
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)
            THEN has_schema_privilege(%(schema)s, 'CREATE') END
"""


def ensure_schema(
    schema: str | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
    manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
) -> list[int]:
    """Create ``schema`` if needed and apply every migration not yet applied there.

    Returns the versions applied by this call (empty when already up to date).
    Raises ``SchemaPrivilegeError`` naming the missing privilege and the fix.
    """
    schema = schema or manager.settings().schema
    with privilege_errors_explained(schema, "aperag_pg's tables", manager):
        return _migrate(schema, sorted(migrations, key=lambda m: m.version), manager)


@contextmanager
def privilege_errors_explained(
    schema: str, what: str, manager: type[PostgreSQLSyncConnectionManager]
) -> Iterator[None]:
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


def _migrate(
    schema: str, wanted: list[Migration], manager: type[PostgreSQLSyncConnectionManager]
) -> list[int]:
    already = _applied_without_lock(manager, schema)
    if already is not None and already >= {m.version for m in wanted}:
        return []
    with manager.get_connection() as conn, conn.cursor() as cur:
        locks.hold_ddl_lock(cur)
        create_schema_if_permitted(cur, schema)
        ident = {"schema": sql.Identifier(schema), "table": sql.Identifier(MIGRATIONS_TABLE)}
        cur.execute(sql.SQL(_CREATE_MIGRATIONS_TABLE).format(**ident))
        cur.execute(sql.SQL(_SELECT_APPLIED).format(**ident))
        done = {row[0] for row in cur.fetchall()}
        applied = []
        for migration in wanted:
            if migration.version in done:
                continue
            for statement in migration.render(schema):
                cur.execute(statement)
            cur.execute(
                sql.SQL(_INSERT_APPLIED).format(**ident),
                (migration.version, migration.description),
            )
            applied.append(migration.version)
    if applied:
        logger.info("schema %s: applied migrations %s", schema, applied)
    return applied


def _applied_without_lock(
    manager: type[PostgreSQLSyncConnectionManager], schema: str
) -> set[int] | None:
    """The versions already applied, read without the lock (the common, cheap case);
    None when the migrations table does not exist yet.
    """
    with manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f'"{schema}"."{MIGRATIONS_TABLE}"',))
        if cur.fetchone()[0] is None:
            return None
        ident = {"schema": sql.Identifier(schema), "table": sql.Identifier(MIGRATIONS_TABLE)}
        cur.execute(sql.SQL(_SELECT_APPLIED).format(**ident))
        return {row[0] for row in cur.fetchall()}


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
