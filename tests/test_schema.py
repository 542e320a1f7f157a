"""Schema initialization: idempotent, concurrent-safe, and clear about missing privileges."""

from __future__ import annotations

import multiprocessing
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from aperag_pg.errors import SchemaPrivilegeError
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.schema import apply_ddl, ensure_schema, table_exists
from devtools.services import create_database, drop_database

# Real DDL of the shape the stores use, so concurrency is tested on tables and indexes.
SAMPLE_DDL = (
    "CREATE TABLE {schema}.sample_docs (workspace varchar(255), id varchar(255), "
    "content text, PRIMARY KEY (workspace, id))",
    "CREATE INDEX sample_docs_content_idx ON {schema}.sample_docs (content)",
    "CREATE TABLE {schema}.sample_status (id text PRIMARY KEY)",
)
SAMPLE_TABLES = ("sample_docs", "sample_status", "sample_docs_content_idx")


def create_sample(schema: str, statements=SAMPLE_DDL, last_table: str = "sample_status"):
    """The sample tables through the DDL runner: "created", or None when already there."""

    def create(cur) -> str:
        for statement in statements:
            cur.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
        return "created"

    return apply_ddl(
        "the sample tables", schema, lambda cur: table_exists(cur, schema, last_table), create
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
        results.put(("ok", create_sample(schema)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))
    finally:
        Manager.close()


def test_eight_processes_create_at_once(base_settings, admin_conn):
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
    assert sorted(map(str, outcomes)) == sorted(map(str, [("ok", "created")] + [("ok", None)] * 7))
    tables = dict(_tables(admin_conn, schema))
    for name in SAMPLE_TABLES:
        assert tables.get(name) == 1, name


def test_idempotent(manager, admin_conn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    assert create_sample(schema) == "created"
    assert create_sample(schema) is None
    ensure_schema(schema)
    assert dict(_tables(admin_conn, schema))["sample_status"] == 1


def test_failed_ddl_leaves_nothing_half_made(manager, admin_conn):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    broken = (*SAMPLE_DDL[:2], "CREATE TABLE {schema}.sample_status (")
    with pytest.raises(psycopg2.errors.SyntaxError):
        create_sample(schema, broken)
    assert _tables(admin_conn, schema) == []  # not even the schema: one transaction
    assert create_sample(schema) == "created"


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
            create_sample("public")
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
    ensure_schema(schema)  # the schema is there: a worker starts without CREATE
    with pytest.raises(SchemaPrivilegeError) as info:
        create_sample(schema)
    assert f"CREATE privilege on schema '{schema}'" in str(info.value)


def test_existing_tables_need_no_create_privilege(limited_role, admin_conn, base_settings):
    schema = f"owned_{uuid.uuid4().hex[:6]}"
    Manager.initialize(base_settings)
    assert create_sample(schema) == "created"  # by the superuser
    with admin_conn.cursor() as cur:
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {limited_role.user}")
    Manager.initialize(limited_role)
    ensure_schema(schema)
    assert create_sample(schema) is None


def test_changing_tables_of_another_role_names_the_privilege(
    limited_role, admin_conn, base_settings
):
    """An upgrade step (ALTER TABLE) on tables the role does not own: the GRANT to run."""
    schema = f"owned_{uuid.uuid4().hex[:6]}"
    Manager.initialize(base_settings)
    create_sample(schema)
    with admin_conn.cursor() as cur:
        cur.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {limited_role.user}")
    Manager.initialize(limited_role)
    upgrade = ("ALTER TABLE {schema}.sample_status ADD COLUMN note text",)
    with pytest.raises(SchemaPrivilegeError) as info:
        create_sample(schema, upgrade, last_table="sample_note")
    message = str(info.value)
    assert "must be owner" in message and "GRANT" in message
    assert limited_role.user in message and "the sample tables" in message


def test_missing_schema_without_database_create_names_the_privilege(limited_role):
    Manager.initialize(limited_role)
    with pytest.raises(SchemaPrivilegeError) as info:
        ensure_schema("app_tables")
    message = str(info.value)
    assert "CREATE privilege on database" in message
    assert "CREATE SCHEMA" in message


def test_dedicated_schema_is_created_when_permitted(limited_role, admin_conn, base_settings):
    with admin_conn.cursor() as cur:
        cur.execute(f'GRANT CREATE ON DATABASE "{base_settings.database}" TO {limited_role.user}')
    schema = f"app_{uuid.uuid4().hex[:6]}"
    Manager.initialize(limited_role.replace(schema=schema))
    ensure_schema()
    assert create_sample(schema) == "created"
    assert dict(_tables(admin_conn, schema))["sample_docs"] == 1
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.sample_docs')")
        assert cur.fetchone()[0] is None
        cur.execute(
            f'REVOKE CREATE ON DATABASE "{base_settings.database}" FROM {limited_role.user}'
        )
    # Once made, a restart needs no CREATE privilege at all.
    ensure_schema()
    assert create_sample(schema) is None
