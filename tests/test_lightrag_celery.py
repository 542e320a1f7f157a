"""LightRAG on the PGSync storages inside a real prefork Celery worker: one instance per
process, reused by every task, no loop errors, no pool rebuilds, no retries."""

from __future__ import annotations

from collections import defaultdict

from psycopg2 import sql

from aperag_pg.devservices import celery_worker

from .conftest import REPO_ROOT
from .lightrag_support import DOCS, new_workspace

LOOP_ERRORS = (
    "Event loop is closed",
    "another operation is in progress",
    "attached to a different loop",
    "bound to a different event loop",
    "ERROR",
    "Traceback",
)


def _processed(admin_conn, workspace: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM lightrag_doc_status WHERE workspace = %s "
                "AND status = 'processed'"
            ),
            (workspace,),
        )
        return cur.fetchone()[0]


def test_lightrag_tasks_in_a_prefork_worker(service_env, admin_conn, tmp_path):
    workspace = new_workspace("celery")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    texts = [f"{doc} Batch item {i}." for i, doc in enumerate(DOCS * 2)]
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        ingests = [
            worker.send("aperag_pg.lightrag_ingest", workspace, [text], [f"celery/{i}.txt"])
            for i, text in enumerate(texts)
        ]
        results = [r.get(timeout=180) for r in ingests]
        queries = [
            worker.send("aperag_pg.lightrag_query", workspace, "Who founded Acme Robotics?", mode)
            for mode in ("local", "global", "hybrid", "naive", "mix", "hybrid")
        ]
        results += [r.get(timeout=120) for r in queries]
        assert worker.warm_shutdown() == 0
        log = worker.log_text()

    assert _processed(admin_conn, workspace) == len(texts)
    instances, opened = defaultdict(set), defaultdict(int)
    for r in results:
        instances[r["pid"]].add(r["instance"])
        opened[r["pid"]] = max(opened[r["pid"]], r["pool"]["connections_num"])
        assert r["pool"]["connections_lost"] == 0 and r["pool"]["requests_timeouts"] == 0
    assert len(instances) == 2  # both worker processes ran tasks
    assert all(len(ids) == 1 for ids in instances.values())  # one LightRAG per process
    assert all(n <= 3 for n in opened.values())  # POSTGRES_MAX_CONNECTIONS=3: no rebuilds
    for r in results[len(texts) :]:
        assert r["answer"].startswith("Stand-in answer") and r["context_chars"] > 0
    for bad in LOOP_ERRORS:
        assert bad not in log, bad


def test_instances_beyond_the_limit_are_finalized(manager, tmp_path, monkeypatch):
    """A worker serving many workspaces keeps at most MAX_INSTANCES LightRAG instances."""
    from aperag_pg.lightrag import tasks

    monkeypatch.setenv("LIGHTRAG_WORKING_DIR", str(tmp_path))
    monkeypatch.setattr(tasks, "MAX_INSTANCES", 2)
    monkeypatch.setattr(tasks, "_instances", tasks.OrderedDict())
    first = tasks.rag_for("lru_a")
    assert tasks.rag_for("lru_a") is first  # reused
    second = tasks.rag_for("lru_b")
    tasks.rag_for("lru_a")  # a is now the most recently used
    tasks.rag_for("lru_c")  # evicts b, the least recently used
    assert [workspace for _, workspace in tasks._instances] == ["lru_a", "lru_c"]
    assert second.text_chunks._store is None  # b's storages were finalized
    assert first.text_chunks._store is not None
    assert tasks.rag_for("lru_a") is first
