"""Schema initialization: idempotent, concurrent-safe, and clear about missing privileges."""

from __future__ import annotations

import multiprocessing
import uuid

import psycopg2
import pytest

from aperag_pg.errors import SchemaPrivilegeError
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.schema import MIGRATIONS_TABLE, Migration, ensure_schema
from devtools.services import create_database, drop_database

# Real DDL of the shape the stores use, so concurrency is tested on tables and indexes.
SAMPLE_MIGRATIONS = (
    Migration(
        1,
        "documents",
        (
            "CREATE TABLE {schema}.sample_docs (workspace varchar(255), id varchar(255), "
            "content text, PRIMARY KEY (workspace, id))",
            "CREATE INDEX sample_docs_content_idx ON {schema}.sample_docs (content)",
        ),
    ),
    Migration(2, "status", ("CREATE TABLE {schema}.sample_status (id text PRIMARY KEY)",)),
    Migration(3, "column", ("ALTER TABLE {schema}.sample_status ADD COLUMN note text",)),
)


def _tables(admin_conn, schema: str) -> list[tuple[str, int]]:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, count(*) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s GROUP BY c.relname ORDER BY c.relname",
            (schema,),
        )
        return cur.fetchall()


def _init_in_child(settings, schema, barrier, results) -> None:
    try:
        Manager.initialize(settings)
        barrier.wait(30)
        results.put(("ok", ensure_schema(schema, SAMPLE_MIGRATIONS)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))
    finally:
        Manager.close()


def test_eight_processes_initialize_at_once(base_settings, admin_conn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [
        ctx.Process(target=_init_in_child, args=(base_settings, schema, barrier, results))
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [o for o in outcomes if o[0] == "error"] == []
    applied = sorted(v for _, versions in outcomes for v in versions)
    assert applied == [1, 2, 3]  # each migration applied by exactly one process
    tables = dict(_tables(admin_conn, schema))
    for name in (MIGRATIONS_TABLE, "sample_docs", "sample_status", "sample_docs_content_idx"):
        assert tables.get(name) == 1, name
    with admin_conn.cursor() as cur:
        cur.execute(f'SELECT version FROM "{schema}".{MIGRATIONS_TABLE} ORDER BY version')
        assert [r[0] for r in cur.fetchall()] == [1, 2, 3]


def test_idempotent(manager, admin_conn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    assert ensure_schema(schema, SAMPLE_MIGRATIONS[:2]) == [1, 2]
    assert ensure_schema(schema, SAMPLE_MIGRATIONS[:2]) == []
    assert ensure_schema(schema, SAMPLE_MIGRATIONS) == [3]  # a new version is applied later
    assert ensure_schema(schema, SAMPLE_MIGRATIONS) == []
    assert ensure_schema(schema) == []
    assert dict(_tables(admin_conn, schema))["sample_status"] == 1


def test_failed_migration_leaves_nothing_half_applied(manager, admin_conn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    broken = SAMPLE_MIGRATIONS[:1] + (Migration(2, "broken", ("CREATE TABLE {schema}.x (",)),)
    with pytest.raises(psycopg2.errors.SyntaxError):
        ensure_schema(schema, broken)
    assert _tables(admin_conn, schema) == []
    assert ensure_schema(schema, SAMPLE_MIGRATIONS) == [1, 2, 3]


@pytest.fixture
def limited_role(admin_conn, base_settings):
    """A login role with only the privileges of an ordinary application user (PostgreSQL 15+)."""
    name = f"apg_limited_{uuid.uuid4().hex[:6]}"
    password = "limited-test-pw"
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", (password,))
        cur.execute(f'REVOKE CREATE ON DATABASE "{base_settings.database}" FROM PUBLIC')
        cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    yield base_settings.replace(user=name, password=password)
    Manager.close()
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        cur.execute(f"DROP OWNED BY {name} CASCADE")
        cur.execute(f"DROP ROLE {name}")


def test_public_not_writable_names_the_privilege(pg_server, limited_role):
    fresh = f"apg_fresh_{uuid.uuid4().hex[:6]}"
    create_database(pg_server.admin, fresh, extensions=())
    Manager.initialize(limited_role.replace(database=fresh))
    try:
        with pytest.raises(SchemaPrivilegeError) as info:
            ensure_schema("public", SAMPLE_MIGRATIONS)
    finally:
        Manager.close()
        drop_database(pg_server.admin, fresh)
    message = str(info.value)
    assert "CREATE privilege on schema 'public'" in message
    assert "PostgreSQL 15" in message
    assert "POSTGRES_SCHEMA" in message and "GRANT CREATE ON SCHEMA" in message


def test_schema_without_create_names_the_privilege(limited_role, admin_conn):
    schema = f"ro_{uuid.uuid4().hex[:6]}"
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {limited_role.user}")
    Manager.initialize(limited_role)
    with pytest.raises(SchemaPrivilegeError) as info:
        ensure_schema(schema, SAMPLE_MIGRATIONS)
    assert f"CREATE privilege on schema '{schema}'" in str(info.value)


def test_tables_of_another_role_name_the_privilege(limited_role, admin_conn, base_settings):
    schema = f"owned_{uuid.uuid4().hex[:6]}"
    Manager.initialize(base_settings)
    ensure_schema(schema, SAMPLE_MIGRATIONS)  # created by the superuser
    with admin_conn.cursor() as cur:
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {limited_role.user}")
    Manager.initialize(limited_role)
    with pytest.raises(SchemaPrivilegeError) as info:
        ensure_schema(schema, SAMPLE_MIGRATIONS)
    message = str(info.value)
    assert "permission denied" in message and "GRANT" in message
    assert limited_role.user in message


def test_missing_schema_without_database_create_names_the_privilege(limited_role):
    Manager.initialize(limited_role)
    with pytest.raises(SchemaPrivilegeError) as info:
        ensure_schema("app_tables", SAMPLE_MIGRATIONS)
    message = str(info.value)
    assert "CREATE privilege on database" in message
    assert "CREATE SCHEMA" in message


def test_dedicated_schema_is_created_when_permitted(limited_role, admin_conn, base_settings):
    with admin_conn.cursor() as cur:
        cur.execute(f'GRANT CREATE ON DATABASE "{base_settings.database}" TO {limited_role.user}')
    schema = f"app_{uuid.uuid4().hex[:6]}"
    Manager.initialize(limited_role.replace(schema=schema))
    assert ensure_schema(migrations=SAMPLE_MIGRATIONS) == [1, 2, 3]
    assert dict(_tables(admin_conn, schema))["sample_docs"] == 1
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.sample_docs')")
        assert cur.fetchone()[0] is None
        cur.execute(
            f'REVOKE CREATE ON DATABASE "{base_settings.database}" FROM {limited_role.user}'
        )
    # Once applied, a restart needs no CREATE privilege at all.
    assert ensure_schema(migrations=SAMPLE_MIGRATIONS) == []
