"""A workspace's whole document lifecycle as Celery tasks, through a real prefork worker:
ingest, status, delete, retry failed, clear; and writers of different workspaces at once."""

from __future__ import annotations

import pytest

from devtools.services import celery_worker

from .conftest import REPO_ROOT
from .lightrag_support import DOCS, FILE_PATHS, new_workspace, workspace_writers


def _rows(admin_conn, workspace: str) -> dict[str, int]:
    """Rows of the workspace in every LightRAG table (vector tables by their model suffix)."""
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name LIKE 'lightrag%%' AND column_name = 'workspace' ORDER BY 1"
        )
        tables = [row[0] for row in cur.fetchall()]
        counts = {}
        for table in tables:
            cur.execute(f'SELECT count(*) FROM "{table}" WHERE workspace = %s', (workspace,))
            counts[table] = cur.fetchone()[0]
    return counts


def _one(admin_conn, query: str, *params) -> object:
    with admin_conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


CHUNKS_OF = "SELECT count(*) FROM lightrag_doc_chunks WHERE workspace = %s AND full_doc_id = %s"
NODE = "SELECT count(*) FROM lightrag_graph_nodes WHERE workspace = %s AND id = %s"
NAMES = ("Dana Lee", "Initech Systems")


def test_the_document_lifecycle_as_tasks(service_env, admin_conn, tmp_path):
    workspace = new_workspace("life")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        ingested = worker.call(
            "aperag_pg.lightrag_ingest", workspace, DOCS, FILE_PATHS, timeout=180
        )
        ids = ingested["inserted"]
        page = worker.call("aperag_pg.lightrag_status", workspace, 1, 10)
        beyond = worker.call("aperag_pg.lightrag_status", workspace, 2, 10)
        bad_page = worker.send("aperag_pg.lightrag_status", workspace, 1, 3)
        dana = ids[3]  # the only document naming Dana Lee
        deleted = worker.call("aperag_pg.lightrag_delete", workspace, [dana], timeout=180)
        deleted_again = worker.call("aperag_pg.lightrag_delete", workspace, [dana], timeout=180)
        after_delete = _rows(admin_conn, workspace)
        chunks_left = _one(admin_conn, CHUNKS_OF, workspace, dana)
        nodes_left = {name: _one(admin_conn, NODE, workspace, name) for name in NAMES}
        with admin_conn.cursor() as cur:  # a document that failed (the pipeline said so)
            cur.execute(
                "UPDATE lightrag_doc_status SET status = 'failed', error_msg = 'model timed out' "
                "WHERE workspace = %s AND id = %s",
                (workspace, ids[0]),
            )
        failed_page = worker.call("aperag_pg.lightrag_status", workspace, 1, 10, "failed")
        retried = worker.call("aperag_pg.lightrag_retry_failed", workspace, timeout=180)
        after_retry = worker.call("aperag_pg.lightrag_status", workspace)
        cleared = worker.call("aperag_pg.lightrag_clear", workspace, timeout=180)
        after_clear = worker.call("aperag_pg.lightrag_status", workspace)

    assert len(ids) == len(DOCS) and set(ingested["statuses"].values()) == {"processed"}
    assert page["counts"]["processed"] == len(DOCS) and page["total"] == len(DOCS)
    assert {d["id"] for d in page["documents"]} == set(ids) and beyond["documents"] == []
    assert all(d["status"] == "processed" and d["error"] is None for d in page["documents"])
    with pytest.raises(Exception, match="page_size must be from 10 to 200"):
        bad_page.get(timeout=60)

    assert deleted == {"deleted": {dana: "success"}}
    assert deleted_again == {"deleted": {dana: "not_found"}}  # a redelivery is harmless
    assert after_delete["lightrag_doc_status"] == len(DOCS) - 1
    assert after_delete["lightrag_doc_full"] == len(DOCS) - 1
    assert chunks_left == 0
    assert nodes_left == {"Dana Lee": 0, "Initech Systems": 1}  # its own gone, shared kept

    assert [(d["id"], d["error"]) for d in failed_page["documents"]] == [
        (ids[0], "model timed out")
    ]
    assert retried == {"retried": [ids[0]], "statuses": {ids[0]: "processed"}}
    assert after_retry["counts"]["processed"] == len(DOCS) - 1
    assert "failed" not in after_retry["counts"]

    assert "chunk_entity_relation_graph" in cleared["cleared"]
    assert after_clear["total"] == 0
    left = {t: n for t, n in _rows(admin_conn, workspace).items() if n}
    assert set(left) <= {"lightrag_llm_cache"}, left  # like LightRAG's clear: cache stays


def test_two_workspaces_ingest_at_the_same_time(service_env, admin_conn, tmp_path):
    """A workspace's writers take turns; different workspaces do not wait for each other:
    both writer locks are seen held at once, by two worker processes."""
    from devtools.corpus import documents

    corpus = documents(12)
    texts, paths = [t for t, _ in corpus], [p for _, p in corpus]
    first, second = new_workspace("par_a"), new_workspace("par_b")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        worker.call("aperag_pg.lightrag_status", first)  # both processes warm, tables made
        pending = [
            worker.send("aperag_pg.lightrag_ingest", ws, texts, paths) for ws in (first, second)
        ]
        most = 0
        while not all(r.ready() for r in pending):
            most = max(most, len(workspace_writers(admin_conn)))
        results = [r.get(timeout=300) for r in pending]
    assert most == 2
    assert results[0]["pid"] != results[1]["pid"]
    assert all(set(r["statuses"].values()) == {"processed"} for r in results)
