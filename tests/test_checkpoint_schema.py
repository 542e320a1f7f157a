"""setup(): idempotent, safe from many processes at once, and at home in a dedicated
schema of a role that may not create anything in public and has a useless search_path."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import timedelta

import pytest
from psycopg2 import sql as pgsql

from aperag_pg.checkpoint import PGSyncCheckpointSaver
from aperag_pg.checkpoint.functions import PUT_FUNCTION
from aperag_pg.checkpoint.retention import apply_retention
from aperag_pg.errors import SchemaPrivilegeError
from aperag_pg.manager import PostgreSQLSyncConnectionManager

from .checkpoint_support import Chain, config, drop_schema, new_schema, new_thread


def _setup_in_child(settings, schema, barrier, results) -> None:
    """A worker process: its own pool, then setup() at the same moment as the others."""
    try:
        PostgreSQLSyncConnectionManager.initialize(settings)
        barrier.wait(30)
        applied = PGSyncCheckpointSaver(schema=schema).setup()
        results.put(("ok", applied))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))
    finally:
        PostgreSQLSyncConnectionManager.close()


def test_concurrent_setup_from_many_processes(manager, base_settings, admin_conn):
    schema = new_schema("race")
    processes = 6
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    children = [
        ctx.Process(target=_setup_in_child, args=(base_settings, schema, barrier, results))
        for _ in range(processes)
    ]
    try:
        for child in children:
            child.start()
        outcomes = [results.get(timeout=60) for _ in children]
        for child in children:
            child.join(30)
        assert all(kind == "ok" for kind, _ in outcomes), outcomes
        applied = [versions for _, versions in outcomes]
        assert sorted(applied, key=len)[-1] == list(range(10))  # one process migrated
        assert sum(1 for versions in applied if versions) == 1  # the others found it done
        with admin_conn.cursor() as cur:
            cur.execute(f'SELECT v, count(*) FROM "{schema}".checkpoint_migrations GROUP BY v')
            assert sorted(cur.fetchall()) == [(v, 1) for v in range(10)]
        saver = PGSyncCheckpointSaver(schema=schema)
        assert saver.setup() == []
        Chain(saver, "after-race").put()
        assert saver.get_tuple(config("after-race")) is not None
    finally:
        drop_schema(admin_conn, schema)


@pytest.fixture
def limited_role(admin_conn, base_settings):
    """A role that may create schemas in the database but nothing in public, whose
    search_path names a schema that does not exist."""
    role = f"cp_limited_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    ident = pgsql.Identifier(role)
    db = pgsql.Identifier(base_settings.database)
    with admin_conn.cursor() as cur:
        cur.execute(pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(ident), (password,))
        cur.execute(pgsql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        cur.execute(pgsql.SQL("GRANT CREATE, CONNECT ON DATABASE {} TO {}").format(db, ident))
        cur.execute(pgsql.SQL("ALTER ROLE {} SET search_path = nowhere").format(ident))
    yield base_settings.replace(user=role, password=password)
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT nspname FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles "
            "WHERE rolname = %s)",
            (role,),
        )
        for (schema,) in cur.fetchall():
            drop_schema(admin_conn, schema)
        cur.execute(pgsql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, ident))
        cur.execute(pgsql.SQL("DROP ROLE {}").format(ident))


def test_dedicated_schema_without_public_or_search_path(manager, limited_role, admin_conn):
    schema = new_schema("dedicated")
    manager.initialize(limited_role.replace(schema=schema))
    saver = PGSyncCheckpointSaver()  # POSTGRES_SCHEMA of the pool
    assert saver.setup() == list(range(10))
    thread = new_thread()
    chain = Chain(saver, thread)
    for _ in range(4):
        saved = chain.put(ts=None)
        saver.put_writes(saved, [("messages", "w")], "task")
    assert saver.get_tuple(config(thread)).checkpoint["channel_values"] == chain.values(3)
    assert len(list(saver.list(config(thread)))) == 4
    saver.copy_thread(thread, thread + "-copy")
    saver.prune([thread])
    saver.delete_for_runs(["run-1"])
    apply_retention(thread_ttl=timedelta(days=1))
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
            (limited_role.user,),
        )
        assert cur.fetchone()[0] == 0
        cur.execute(
            "SELECT count(*) FROM pg_tables "
            "WHERE schemaname = %s AND tablename LIKE 'checkpoint%%'",
            (schema,),
        )
        assert cur.fetchone()[0] == 4


def test_missing_privilege_is_named_with_its_fix(manager, limited_role, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute(
            pgsql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
                pgsql.Identifier(limited_role.database), pgsql.Identifier(limited_role.user)
            )
        )
    manager.initialize(limited_role)
    for schema in ("public", new_schema("denied")):
        with pytest.raises(SchemaPrivilegeError, match="GRANT|CREATE SCHEMA"):
            PGSyncCheckpointSaver(schema=schema).setup()


def test_setup_is_idempotent_and_cheap(manager, admin_conn):
    schema = new_schema("idem")
    try:
        saver = PGSyncCheckpointSaver(schema=schema)
        assert saver.setup() == list(range(10))
        assert saver.setup() == []
        with admin_conn.cursor() as cur:  # a lost function is recreated, nothing re-migrated
            cur.execute(f'DROP FUNCTION "{schema}".{PUT_FUNCTION}')
        assert saver.setup() == []
        Chain(saver, "idem").put()
        with pytest.raises(ValueError, match="schema"):
            PGSyncCheckpointSaver(schema='bad"name')
    finally:
        drop_schema(admin_conn, schema)
