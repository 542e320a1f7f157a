"""Two roles, as docs/DEPLOYMENT.md sets them up: an owner runs ``init-schema`` once, and the
workers run as an application role with USAGE on the schema and SELECT, INSERT, UPDATE,
DELETE on its tables only: ingest, query, delete, clear, the graph and LangGraph
checkpoints all work, and the application role never creates anything."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from aperag_pg.lightrag.standins import EMBEDDING_DIM, EMBEDDING_MODEL
from devtools.services import celery_worker

from .checkpoint_support import new_thread
from .cli_support import run_cli, verdicts
from .conftest import REPO_ROOT
from .lightrag_support import DOCS, new_workspace

OWNER_PASSWORD, APP_PASSWORD = "owner-test-pw", "app-test-pw"


@pytest.fixture
def two_roles(base_settings, admin_conn):
    """An owner that may create schemas in the database, an application role with nothing
    yet, and a schema name. pgvector is already enabled (a superuser's one-time step)."""
    tag = uuid.uuid4().hex[:6]
    owner, app, schema = f"apg_owner_{tag}", f"apg_app_{tag}", f"rag_{tag}"
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {owner} LOGIN PASSWORD %s", (OWNER_PASSWORD,))
        cur.execute(f"CREATE ROLE {app} LOGIN PASSWORD %s", (APP_PASSWORD,))
        cur.execute(f'GRANT CREATE ON DATABASE "{base_settings.database}" TO {owner}')
    owner_settings = base_settings.replace(user=owner, password=OWNER_PASSWORD, schema=schema)
    app_settings = base_settings.replace(user=app, password=APP_PASSWORD, schema=schema)
    yield owner_settings, app_settings
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN (%s, %s)",
            (owner, app),
        )
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for role in (app, owner):
            cur.execute(f"DROP OWNED BY {role} CASCADE")
            cur.execute(f"DROP ROLE {role}")


def _grant_as_owner(owner_settings, app_role: str, schema: str) -> None:
    """The two GRANTs of docs/DEPLOYMENT.md, run by the owner."""
    conn = psycopg2.connect(**owner_settings.connect_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {app_role}")
            cur.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                f"TO {app_role}"
            )
    finally:
        conn.close()


def test_an_application_role_without_create_runs_everything(
    two_roles, service_env, admin_conn, tmp_path
):
    owner, app = two_roles
    schema = owner.schema
    init = run_cli(
        owner,
        "init-schema",
        "--embedding-dim",
        str(EMBEDDING_DIM),
        "--embedding-model",
        EMBEDDING_MODEL,
        POSTGRES_SCHEMA=schema,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    _grant_as_owner(owner, app.user, schema)
    doctor = run_cli(app, "doctor", POSTGRES_SCHEMA=schema)
    assert verdicts(doctor.stdout)["privileges"] == "OK", doctor.stdout
    assert verdicts(doctor.stdout)["tables"] == "OK", doctor.stdout

    env = {
        **service_env,
        "POSTGRES_USER": app.user,
        "POSTGRES_PASSWORD": APP_PASSWORD,
        "POSTGRES_SCHEMA": schema,
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
    }
    kept, cleared = new_workspace("lp_kept"), new_workspace("lp_cleared")
    thread = new_thread("lp")
    paths = [f"lp/{i}.txt" for i in range(len(DOCS))]
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        ingested = [
            worker.send("aperag_pg.lightrag_ingest", ws, DOCS, paths) for ws in (kept, cleared)
        ]
        started = worker.send("aperag_pg.checkpoint_demo_start", thread, "least privilege")
        ingested = [r.get(timeout=240) for r in ingested]
        started = started.get(timeout=120)
        answer = worker.call("aperag_pg.lightrag_query", kept, "Who founded Acme Robotics?")
        resumed = worker.call("aperag_pg.checkpoint_demo_resume", thread, "yes", timeout=120)
        status = worker.call("aperag_pg.lightrag_status", kept)
        doc_ids = [doc["id"] for doc in status["documents"]][:1]
        deleted = worker.call("aperag_pg.lightrag_delete", kept, doc_ids, timeout=120)
        emptied = worker.call("aperag_pg.lightrag_clear", cleared, timeout=120)
        pruned = worker.call("aperag_pg.prune_checkpoints", 30, None, timeout=120)
        after = worker.call("aperag_pg.lightrag_status", kept)
        assert worker.warm_shutdown() == 0
        log = worker.log_text()

    for result in ingested:
        counts = result["status_counts"]
        assert counts.get("processed") == len(DOCS) and not counts.get("failed"), counts
    assert answer["answer"].startswith("Stand-in answer") and answer["context_chars"] > 0
    assert started["next"] == ["review"] and resumed["next"] == []
    assert deleted["deleted"] == {doc_ids[0]: "success"}, deleted
    assert after["total"] == len(DOCS) - 1
    assert "chunk_entity_relation_graph" in emptied["cleared"]
    assert pruned["threads_deleted"] == 0
    assert "permission denied" not in log and "Traceback" not in log
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT has_schema_privilege(%s, %s, 'CREATE'), "
            "(SELECT count(*) FROM pg_class WHERE relowner = %s::regrole)",
            (app.user, schema, app.user),
        )
        assert cur.fetchone() == (False, 0)  # it could create nothing, and made nothing


def test_doctor_names_a_missing_privilege_with_its_grant(two_roles):
    owner, app = two_roles
    schema = owner.schema
    init = run_cli(owner, "init-schema", POSTGRES_SCHEMA=schema)
    assert init.returncode == 0, init.stdout + init.stderr
    _grant_as_owner(owner, app.user, schema)
    conn = psycopg2.connect(**owner.connect_kwargs())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"REVOKE DELETE ON {schema}.lightrag_doc_status FROM {app.user}")
    conn.close()
    doctor = run_cli(app, "doctor", POSTGRES_SCHEMA=schema)
    assert doctor.returncode == 1
    assert verdicts(doctor.stdout)["privileges"] == "FAIL"
    assert "DELETE" in doctor.stdout and "lightrag_doc_status" in doctor.stdout
    assert f'TO "{app.user}"' in doctor.stdout and "GRANT" in doctor.stdout
