"""PGSyncStore's tables: upstream's migrations and versions, made through the one DDL runner;
a role without CREATE uses them; a wrong setup names its fix."""

from __future__ import annotations

import pytest

from aperag_pg.errors import (
    ConfigError,
    EmbeddingDimensionMismatch,
    SchemaError,
    SchemaPrivilegeError,
)
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.memory import PGSyncStore

from .cli_support import run_cli
from .memory_support import LetterEmbeddings, count_rows
from .test_least_privilege import _grant_as_owner, two_roles  # noqa: F401 - the fixture


def index(dims: int = 64, kind: str = "hnsw") -> dict:
    return {"dims": dims, "embed": LetterEmbeddings(dims), "ann_index_config": {"kind": kind}}


def versions(admin_conn, schema: str, table: str) -> list[int]:
    with admin_conn.cursor() as cur:
        cur.execute(f'SELECT v FROM "{schema}".{table} ORDER BY v')
        return [v for (v,) in cur.fetchall()]


def vector_index_method(admin_conn, schema: str) -> str | None:
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
            "WHERE c.oid = to_regclass(%s)",
            (f'"{schema}".store_vectors_embedding_idx',),
        )
        row = cur.fetchone()
    return row and row[0]


def test_setup_is_idempotent_and_records_upstreams_versions(schema, admin_conn):
    PGSyncStore(schema=schema, index=index()).setup()
    PGSyncStore(schema=schema, index=index()).setup()
    assert versions(admin_conn, schema, "store_migrations") == [0, 1, 2, 3]
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1, 2]
    assert vector_index_method(admin_conn, schema) == "hnsw"


def test_a_flat_index_is_upgraded_to_hnsw_later(schema, admin_conn):
    """Upstream skips (and does not record) the ANN index for kind "flat"; a later store
    with an ANN index builds it, as PostgresStore would."""
    flat = PGSyncStore(schema=schema, index=index(kind="flat"))
    flat.setup()
    flat.put(("docs",), "a", {"text": "kept across the upgrade"})
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1]
    assert vector_index_method(admin_conn, schema) is None
    hnsw = PGSyncStore(schema=schema, index=index(kind="hnsw"))
    hnsw.setup()
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1, 2]
    assert vector_index_method(admin_conn, schema) == "hnsw"
    assert [i.key for i in hnsw.search(("docs",), query="kept")] == ["a"]


def test_another_dimension_names_the_tables_type(schema):
    PGSyncStore(schema=schema, index=index(64)).setup()
    with pytest.raises(EmbeddingDimensionMismatch, match=r"vector\(64\).*vector\(32\)"):
        PGSyncStore(schema=schema, index=index(32)).setup()


def test_without_setup_the_error_names_setup(schema):
    with pytest.raises(SchemaError, match=r"PGSyncStore.setup\(\)"):
        PGSyncStore(schema=schema).put(("docs",), "a", {"v": 1})


def test_an_index_without_embed_makes_tables_but_cannot_embed(schema):
    store = PGSyncStore(schema=schema, index={"dims": 8})
    store.setup()
    with pytest.raises(ConfigError, match="has no embed"):
        store.put(("docs",), "a", {"text": "x"})
    store.put(("docs",), "b", {"text": "y"}, index=False)  # nothing to embed: stored
    assert store.get(("docs",), "b").value == {"text": "y"}


def test_init_schema_makes_the_store_tables(base_settings, schema, admin_conn):
    done = run_cli(base_settings, "init-schema", "--memory-dims", "16", POSTGRES_SCHEMA=schema)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LangGraph memory store tables: ready, with 16-dimensional vectors" in done.stdout
    assert versions(admin_conn, schema, "vector_migrations") == [0, 1, 2]
    PGSyncStore(schema=schema, index=index(16)).setup()  # finds them up to date


def test_an_application_role_without_create_uses_the_owners_tables(
    two_roles,  # noqa: F811 - the fixture
    admin_conn,
):
    owner, app = two_roles
    schema = owner.schema
    Manager.initialize(app)
    try:
        with pytest.raises(SchemaPrivilegeError, match="GRANT"):
            PGSyncStore(schema=schema).setup()  # nothing there yet, and no CREATE
    finally:
        Manager.close()
    Manager.initialize(owner)
    try:
        PGSyncStore(schema=schema, index=index(), ttl={"default_ttl": 0.25}).setup()
    finally:
        Manager.close()
    _grant_as_owner(owner, app.user, schema)
    Manager.initialize(app)
    try:
        store = PGSyncStore(schema=schema, index=index(), ttl={"default_ttl": 0.25})
        store.setup()  # up to date: creates nothing
        store.put(("users", "u1"), "fav", {"text": "green tea"})
        assert [i.key for i in store.search(("users",), query="green tea")] == ["fav"]
        assert store.list_namespaces() == [("users", "u1")]
        assert store.sweep_ttl() == 0
        store.delete(("users", "u1"), "fav")
    finally:
        Manager.close()
    assert count_rows(admin_conn, schema, "store") == 0
