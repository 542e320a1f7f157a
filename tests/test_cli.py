"""``python -m aperag_pg doctor | init-schema | stats`` as a user runs them."""

from __future__ import annotations

import uuid

import pytest

from aperag_pg.stores.vector_tables import vector_table_name

from .cli_support import run_cli, verdicts


def test_init_schema_then_doctor_reports_all_ok(base_settings):
    schema = f"cli_{uuid.uuid4().hex[:6]}"
    before = run_cli(base_settings, "doctor", POSTGRES_SCHEMA=schema)
    assert before.returncode == 0, before.stdout + before.stderr
    assert verdicts(before.stdout)["tables"] == "WARN"  # nothing created yet
    assert "init-schema" in before.stdout

    for _ in range(2):  # idempotent
        init = run_cli(
            base_settings,
            "init-schema",
            "--embedding-dim",
            "8",
            "--embedding-model",
            "Test-Model.v2",
            POSTGRES_SCHEMA=schema,
        )
        assert init.returncode == 0, init.stdout + init.stderr
    assert "lightrag_vdb_chunks_test_model_v2_8d" in init.stdout.lower()
    assert "LangGraph checkpoint tables: ready" in init.stdout

    after = run_cli(base_settings, "doctor", POSTGRES_SCHEMA=schema)
    assert after.returncode == 0
    assert verdicts(after.stdout) == {
        "connection": "OK",
        "encryption": "OK",  # not encrypted, but over loopback: nothing to encrypt
        "server": "OK",
        "pgvector": "OK",
        "privileges": "OK",
        "tables": "OK",
        "leases": "OK",
        "pool budget": "OK",
        "models": "WARN",  # the offline stand-ins: said so, not an error
        "embeddings": "OK",
    }
    assert "PostgreSQL 1" in after.stdout and "installed, version 0.8" in after.stdout

    stats = run_cli(base_settings, "stats", POSTGRES_SCHEMA=schema)
    assert stats.returncode == 0
    assert "lightrag_doc_status" in stats.stdout and "checkpoints" in stats.stdout
    assert "lightrag_graph_nodes" in stats.stdout and "lightrag_graph_edges" in stats.stdout


def test_doctor_fails_clearly_when_the_server_is_unreachable(base_settings):
    settings = base_settings.replace(port=1, password="not-the-password-xyz")
    result = run_cli(settings, "doctor")
    assert result.returncode == 1
    assert verdicts(result.stdout) == {"connection": "FAIL"}
    assert "POSTGRES_HOST" in result.stdout
    assert "not-the-password-xyz" not in result.stdout + result.stderr


def test_doctor_fails_on_missing_privileges(base_settings, admin_conn):
    role, schema = f"cli_role_{uuid.uuid4().hex[:6]}", f"ro_{uuid.uuid4().hex[:6]}"
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'cli-test-pw'")
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    try:
        limited = base_settings.replace(user=role, password="cli-test-pw")
        result = run_cli(limited, "doctor", POSTGRES_SCHEMA=schema)
    finally:
        with admin_conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
            cur.execute(f"DROP ROLE {role}")
    assert result.returncode == 1
    assert verdicts(result.stdout)["privileges"] == "FAIL"
    assert f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}"' in result.stdout


def test_doctor_fails_when_the_pool_cannot_fit(base_settings):
    result = run_cli(base_settings, "doctor", POSTGRES_MAX_CONNECTIONS="1000")
    assert result.returncode == 1
    assert verdicts(result.stdout)["pool budget"] == "FAIL"
    assert "PgBouncer" in result.stdout


def test_invalid_settings_exit_2_with_the_variable_named(base_settings):
    result = run_cli(base_settings, "doctor", POSTGRES_PORT="eighty")
    assert result.returncode == 2
    assert "POSTGRES_PORT" in result.stderr


@pytest.mark.parametrize(
    ("model", "dim"), [("text-embedding-3-large", 3072), ("BAAI/bge-m3", 1024), (None, 8)]
)
def test_vector_table_name_follows_lightrag(model, dim):
    from lightrag.kg.postgres_impl import namespace_to_table_name
    from lightrag.utils import EmbeddingFunc

    from aperag_pg.lightrag.storages import PGSyncVectorStorage

    async def embed(texts):
        raise AssertionError("not called")

    storage = PGSyncVectorStorage(
        namespace="entities",
        workspace="w",
        global_config={
            "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": 0.2},
            "embedding_batch_num": 8,
        },
        embedding_func=EmbeddingFunc(embedding_dim=dim, func=embed, model_name=model),
    )
    assert vector_table_name("entities", model, dim) == storage.table_name
    assert storage.table_name.startswith(namespace_to_table_name("entities"))


def test_doctor_fails_when_no_model_is_configured(base_settings):
    result = run_cli(base_settings, "doctor", LLM_BINDING="")
    assert result.returncode == 1
    assert verdicts(result.stdout)["models"] == "FAIL"
    assert "LLM_BINDING=openai" in result.stdout and "OPENAI_API_KEY" in result.stdout


@pytest.fixture
def owned_schema(base_settings, admin_conn):
    """A schema whose tables the administrator created (init-schema), and a login role."""
    role, schema = f"cli_dml_{uuid.uuid4().hex[:6]}", f"owned_{uuid.uuid4().hex[:6]}"
    init = run_cli(base_settings, "init-schema", POSTGRES_SCHEMA=schema)
    assert init.returncode == 0, init.stdout + init.stderr
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'cli-test-pw'")
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    yield role, schema, base_settings.replace(user=role, password="cli-test-pw", schema=schema)
    with admin_conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
        cur.execute(f"DROP OWNED BY {role}")
        cur.execute(f"DROP ROLE {role}")


def test_doctor_passes_a_role_with_dml_only_on_tables_the_owner_made(owned_schema, admin_conn):
    role, schema, limited = owned_schema
    with admin_conn.cursor() as cur:
        cur.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
        )
    result = run_cli(limited, "doctor", POSTGRES_SCHEMA=schema)
    assert verdicts(result.stdout)["privileges"] == "OK", result.stdout
    assert result.returncode == 0, result.stdout
    # and it is true: that role writes through the stores without any DDL
    from aperag_pg.manager import PostgreSQLSyncConnectionManager
    from aperag_pg.stores.kv import KVStore

    PostgreSQLSyncConnectionManager.initialize(limited)
    try:
        store = KVStore("full_docs", "dml_only")
        store.ensure_tables()
        store.upsert({"doc-1": {"content": "written by a role without CREATE"}})
        assert store.get_by_id("doc-1")["content"].startswith("written")
    finally:
        PostgreSQLSyncConnectionManager.close()


def test_doctor_fails_a_role_that_may_create_but_not_write(owned_schema, admin_conn):
    role, schema, limited = owned_schema
    with admin_conn.cursor() as cur:
        cur.execute(f"GRANT CREATE ON SCHEMA {schema} TO {role}")
    result = run_cli(limited, "doctor", POSTGRES_SCHEMA=schema)
    assert result.returncode == 1
    assert verdicts(result.stdout)["privileges"] == "FAIL"
    assert "lacks DELETE/INSERT/SELECT/UPDATE on" in result.stdout
    assert f'ALL TABLES IN SCHEMA "{schema}" TO "{role}"' in result.stdout


def test_init_schema_refuses_a_dimension_below_one(base_settings):
    result = run_cli(base_settings, "init-schema", "--embedding-dim", "0")
    assert result.returncode == 2 and "must be a positive integer" in result.stderr


def test_stats_counts_the_configured_application_name_and_fails_cleanly(base_settings):
    from aperag_pg.manager import PostgreSQLSyncConnectionManager

    named = base_settings.replace(application_name="myapp", min_connections=2)
    PostgreSQLSyncConnectionManager.initialize(named)
    try:
        result = run_cli(base_settings, "stats", POSTGRES_APPLICATION_NAME="myapp")
    finally:
        PostgreSQLSyncConnectionManager.close()
    assert result.returncode == 0, result.stderr
    assert "connections of aperag_pg worker processes (1):" in result.stdout
    import os

    assert f"pid {os.getpid():>8}" in result.stdout
    down = run_cli(base_settings.replace(port=1), "stats")
    wrong = run_cli(base_settings.replace(password="not-the-password"), "stats")
    for failed in (down, wrong):
        assert failed.returncode == 2 and failed.stderr.startswith("error: cannot connect")
        assert "Traceback" not in failed.stderr
