"""Everything through a real PgBouncer in transaction mode.

Behind it a server connection serves a client for one transaction only, and here two
server connections serve every client, so what relies on session state breaks:
prepared statements, SET without LOCAL, session advisory locks, LISTEN, temporary
tables across statements. Every store, the LangGraph memory store, the checkpointer
with its conformance suite,
``init-schema``, and LightRAG and LangGraph tasks in a prefork worker of two processes
all run through it.
"""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from psycopg2 import sql

from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.memory import PGSyncStore
from aperag_pg.stores.doc_status import DocStatusStore
from aperag_pg.stores.graph import GraphStore
from aperag_pg.stores.kv import KVStore
from aperag_pg.stores.vector import VectorStore
from devtools.services import celery_worker

from .checkpoint_support import drop_schema, new_thread, run_conformance_suite
from .cli_support import run_cli
from .conftest import REPO_ROOT
from .lightrag_support import DOCS, new_workspace

DIMENSION = 8
MEMORY_SCHEMA = "pgbouncer_memory"


@pytest.fixture
def through_pgbouncer(pgbouncer, base_settings):
    """The process pool opened on PgBouncer: four client connections, two server ones.
    PgBouncer's server connections keep the last client's application_name; a name of
    their own keeps them apart from the pools of the other tests in this process."""
    routed = pgbouncer.route(base_settings, max_connections=4, application_name="via_pgbouncer")
    Manager.initialize(routed)
    yield pgbouncer
    Manager.close()


def _vector(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-1, 1) for _ in range(DIMENSION)]


def exercise_every_store(workspace: str) -> None:
    """Writes and reads of each of LightRAG's four storages, checked as they go."""
    kv = KVStore("full_docs", workspace=workspace)
    kv.ensure_tables()
    kv.upsert({f"doc-{i}": {"content": f"text {i}"} for i in range(20)})
    assert kv.get_by_id("doc-7")["content"] == "text 7"
    assert kv.filter_keys({"doc-1", "doc-99"}) == {"doc-99"}

    chunks = VectorStore(
        "chunks", f"LIGHTRAG_VDB_CHUNKS_pgbouncer_{DIMENSION}d", DIMENSION, 0.0, workspace
    )
    chunks.ensure_tables()
    rows = {
        f"chunk-{i}": {
            "tokens": 5,
            "chunk_order_index": i,
            "full_doc_id": f"doc-{i}",
            "content": f"chunk {i}",
            "file_path": f"docs/{i}.txt",
            "__vector__": _vector(i),
        }
        for i in range(30)
    }
    chunks.upsert(rows)
    chunks.upsert({"chunk-3": rows["chunk-3"]})  # the delete + COPY path over stored rows
    hits = chunks.query(_vector(3), top_k=3)
    assert hits[0]["id"] == "chunk-3"
    chunks.delete(["chunk-3"])
    assert chunks.get_by_id("chunk-3") is None

    status = DocStatusStore(workspace=workspace)
    status.ensure_tables()
    status.upsert(
        {
            f"doc-{i}": {
                "content_summary": f"summary {i}",
                "content_length": 10,
                "status": "processed" if i % 2 else "pending",
                "file_path": f"docs/{i}.txt",
            }
            for i in range(12)
        }
    )
    assert status.get_status_counts() == {"processed": 6, "pending": 6}
    page, total = status.get_docs_paginated(page=2, page_size=10)
    assert total == 12 and len(page) == 2

    graph = GraphStore(workspace=workspace)
    graph.ensure_tables()
    graph.upsert_nodes_batch(
        [(name, {"entity_id": name, "entity_type": "person"}) for name in "ABCDE"]
    )
    graph.upsert_edges_batch([(a, b, {"weight": 1.0}) for a, b in ("AB", "BC", "CD", "DE")])
    subgraph = graph.knowledge_graph("A", max_depth=2, max_nodes=10)  # a snapshot: 2 statements
    assert sorted(node_id for node_id, _ in subgraph.nodes) == ["A", "B", "C"]
    graph.remove_nodes(["E"])
    assert graph.get_node_edges("D") == [("D", "C")]

    memory = PGSyncStore(
        schema=MEMORY_SCHEMA,
        index={"dims": DIMENSION, "embed": lambda texts: [_vector(len(t)) for t in texts]},
    )
    memory.setup()  # four first users at once, through PgBouncer
    memory.put((workspace, "notes"), "n1", {"text": "abc", "n": 1})
    memory.put((workspace, "notes"), "n2", {"text": "abcdef", "n": 2}, ttl=5)
    found = memory.search((workspace,), query="abc", filter={"n": {"$gte": 1}})
    assert [item.key for item in found] == ["n1", "n2"]  # a transaction with SET LOCAL
    assert memory.get((workspace, "notes"), "n2").value["n"] == 2  # and a TTL refresh
    assert memory.list_namespaces(prefix=(workspace,)) == [(workspace, "notes")]


def test_every_store_from_four_threads_through_two_server_connections(
    through_pgbouncer, admin_conn
):
    errors: list[BaseException] = []

    def run(workspace: str) -> None:
        try:
            exercise_every_store(workspace)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(new_workspace("pgb"),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    stats = Manager.stats()
    assert stats["connections_num"] == 4 and stats["connections_lost"] == 0
    servers = through_pgbouncer.show("SERVERS")
    assert 1 <= len(servers) <= 2  # four clients' transactions shared two server sessions
    drop_schema(admin_conn, MEMORY_SCHEMA)


def test_checkpoint_conformance_through_pgbouncer(through_pgbouncer, admin_conn, capsys):
    run_conformance_suite(admin_conn, capsys)


def test_init_schema_through_pgbouncer(pgbouncer, base_settings, admin_conn):
    schema = f"pgb_{uuid.uuid4().hex[:8]}"
    try:
        result = run_cli(
            pgbouncer.route(base_settings),
            "init-schema",
            "--embedding-dim",
            str(DIMENSION),
            POSTGRES_SCHEMA=schema,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with admin_conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND "
                "(tablename LIKE 'lightrag%%' OR tablename LIKE 'checkpoint%%')",
                (schema,),
            )
            assert cur.fetchone()[0] >= 14  # LightRAG's 13 with vectors, and the checkpoints'
    finally:
        drop_schema(admin_conn, schema)


def test_lightrag_and_langgraph_tasks_in_two_processes_through_pgbouncer(
    pgbouncer, base_settings, service_env, admin_conn, tmp_path
):
    env = {
        **service_env,
        **pgbouncer.route(base_settings).to_env(),
        "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
    }
    workspaces = [new_workspace("pgb_a"), new_workspace("pgb_b")]
    threads = [new_thread("pgb") for _ in range(4)]
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        ingests = [
            worker.send("aperag_pg.lightrag_ingest", ws, [doc], [f"pgb/{i}.txt"])
            for ws in workspaces
            for i, doc in enumerate(DOCS)
        ]
        starts = [
            worker.send("aperag_pg.checkpoint_demo_start", thread, "bouncers") for thread in threads
        ]
        ingested = [r.get(timeout=240) for r in ingests]
        started = [r.get(timeout=120) for r in starts]
        queries = [
            worker.send("aperag_pg.lightrag_query", ws, "Who founded Acme Robotics?", "hybrid")
            for ws in workspaces
        ]
        resumes = [
            worker.send("aperag_pg.checkpoint_demo_resume", thread, "yes", i % 2 == 0)
            for i, thread in enumerate(threads)
        ]
        answered = [r.get(timeout=120) for r in queries]
        resumed = [r.get(timeout=120) for r in resumes]
        assert worker.warm_shutdown() == 0
        log = worker.log_text()

    assert len({r["pid"] for r in ingested + started + answered + resumed}) == 2
    for workspace in workspaces:
        with admin_conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT status, count(*) FROM lightrag_doc_status WHERE workspace = %s "
                    "GROUP BY status"
                ),
                (workspace,),
            )
            assert dict(cur.fetchall()) == {"processed": len(DOCS)}
    for answer in answered:
        assert answer["answer"].startswith("Stand-in answer") and answer["context_chars"] > 0
    for begun in started:
        assert begun["next"] == ["review"]
    for done in resumed:
        assert done["next"] == [] and done["state"]["draft"].endswith("(published)")
    assert "Traceback" not in log and "prepared statement" not in log
