"""LightRAG on the PGSync storages inside a real prefork Celery worker: one instance per
process, reused by every task, no loop errors, no pool rebuilds, no retries."""

from __future__ import annotations

import os
import signal
import uuid
from collections import defaultdict

from celery import Celery
from psycopg2 import sql

from devtools.services import celery_worker

from .conftest import REPO_ROOT
from .lightrag_support import DOCS, FILE_PATHS, first_writer, new_workspace, workspace_writers
from .make_support import make, make_ok

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
    monkeypatch.setenv("LLM_BINDING", "standin")
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


QUESTION = "How is Acme Robotics related to Globex Corporation?"


def _ask_everyone(client: Celery, workspace: str) -> dict[str, dict[int, set[str]]]:
    """Ask the same questions many times, so that every worker process answers some:
    mode -> worker pid -> digests of the contexts that process answered from."""
    sent = [
        (mode, client.send_task("aperag_pg.lightrag_query", args=(workspace, QUESTION, mode)))
        for mode in ("local", "global")
        for _ in range(8)
    ]
    seen: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for mode, result in sent:
        answer = result.get(timeout=120)
        assert answer["context_chars"] > 500, answer  # a context, not "no relevant data"
        seen[mode][answer["pid"]].add(answer["context_digest"])
    return seen


def test_every_process_answers_from_one_graph_before_and_after_a_restart(service_env, tmp_path):
    """The knowledge graph lives in PostgreSQL: whichever worker process serves a query, and
    after `make worker-restart`, the context is the same. (With LightRAG's file-based graph,
    a process that did not ingest answers with no context at all.)"""
    workspace = new_workspace("shared")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    run_dir = tmp_path / "run"
    client = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    try:
        make_ok("worker-start", env, run_dir)
        ingest = client.send_task("aperag_pg.lightrag_ingest", args=(workspace, DOCS, FILE_PATHS))
        assert ingest.get(timeout=180)["status_counts"]["processed"] == len(DOCS)
        before = _ask_everyone(client, workspace)
        make_ok("worker-restart", env, run_dir)
        after = _ask_everyone(client, workspace)
    finally:
        stopped = make("worker-stop", env, run_dir)
        client.close()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    pids_before = {pid for by_pid in before.values() for pid in by_pid}
    pids_after = {pid for by_pid in after.values() for pid in by_pid}
    assert len(pids_before) == 2 and len(pids_after) == 2 and not pids_before & pids_after
    for mode in ("local", "global"):
        digests = {
            d for by_pid in (before[mode], after[mode]) for ds in by_pid.values() for d in ds
        }
        assert len(digests) == 1, (mode, before[mode], after[mode])
    assert not list((tmp_path / "rag").rglob("*.graphml"))  # nothing kept per process


def test_a_workspace_named_like_a_lock_blocks_nothing_else(manager, admin_conn):
    """The writer lease of a workspace named like the DDL lock is not that lock: an ingest
    never holds up the package's DDL (CREATE EXTENSION, tables)."""
    from aperag_pg import locks
    from aperag_pg.lightrag.writer import one_writer

    for workspace in ("pgvector", locks._DDL_NAME):
        with one_writer(workspace), admin_conn.cursor() as cur:
            assert workspace_writers(admin_conn) == [os.getpid()]  # the lease is really held
            cur.execute("BEGIN")
            locks.hold_ddl_lock(cur)  # returns at once: nobody holds it
            cur.execute("ROLLBACK")
        assert workspace_writers(admin_conn) == []  # and given back


def _status_counts(admin_conn, workspace: str) -> dict[str, int]:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT to_regclass('lightrag_doc_status') IS NOT NULL")
        if not cur.fetchone()[0]:  # the first ingest has not created it yet
            return {}
        cur.execute(
            "SELECT status, count(*) FROM lightrag_doc_status WHERE workspace = %s GROUP BY 1",
            (workspace,),
        )
        return dict(cur.fetchall())


def _stored(admin_conn, workspace: str) -> dict[str, int]:
    """Rows per LightRAG table of a workspace: a duplicate anywhere shows as a difference."""
    counts = {}
    with admin_conn.cursor() as cur:
        for table in (
            "lightrag_doc_full",
            "lightrag_doc_chunks",
            "lightrag_doc_status",
            "lightrag_full_entities",
            "lightrag_full_relations",
            "lightrag_graph_nodes",
            "lightrag_graph_edges",
        ):
            cur.execute(f"SELECT count(*) FROM {table} WHERE workspace = %s", (workspace,))
            counts[table] = cur.fetchone()[0]
    return counts


def test_an_ingest_whose_worker_is_killed_midway_completes_without_duplicates(
    service_env, admin_conn, tmp_path
):
    """kill -9 of the process holding the workspace's writer lock, with some documents
    processed and others not: the ingest is delivered again, finishes every document
    exactly once, and stores what an uninterrupted ingest of the same documents stores."""
    from devtools.corpus import documents

    corpus = documents(16)
    texts, paths = [t for t, _ in corpus], [p for _, p in corpus]
    crashed, clean = new_workspace("killed"), new_workspace("clean")
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    with celery_worker(env, tmp_path, pool="prefork", concurrency=2, cwd=REPO_ROOT) as worker:
        ingest = worker.send("aperag_pg.lightrag_ingest", crashed, texts, paths)
        victim = None
        while victim is None:  # wait until it is midway: some processed, not all
            counts = _status_counts(admin_conn, crashed)
            holder = first_writer(admin_conn)
            if holder and 0 < counts.get("processed", 0) < len(texts):
                victim = holder
                os.kill(victim, signal.SIGKILL)
            assert not ingest.ready(), "the ingest finished before it could be interrupted"
        at_kill = dict(counts)
        result = ingest.get(timeout=300)
        reference = worker.send("aperag_pg.lightrag_ingest", clean, texts, paths).get(timeout=300)
        log = worker.log_text()
    assert "WorkerLostError" in log or "signal 9" in log
    assert result["pid"] != victim  # delivered again, to a live process
    assert result["already_processed"] and (result["resumed"] or result["inserted"])
    assert set(result["statuses"].values()) == {"processed"}
    assert at_kill.get("processed", 0) < len(texts)
    assert _status_counts(admin_conn, crashed) == {"processed": len(texts)}  # no dup- rows
    assert reference["status_counts"]["processed"] == len(texts)
    assert _stored(admin_conn, crashed) == _stored(admin_conn, clean)


def _kill_when_started(pid: int):
    """A result-message callback that SIGKILLs ``pid`` at the task's first STARTED."""
    killed: list[int] = []

    def on_message(meta: dict) -> None:
        if meta["status"] == "STARTED" and not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return on_message


def _interrupted(worker, child_pid: int, name: str, *args) -> tuple[dict, int]:
    """Send a task and SIGKILL the worker process running it the moment the result backend
    reports it STARTED; return its result (after the redelivery) and the killed pid.
    Tried again when the task outran the kill (its result then names the killed pid)."""
    for _ in range(5):
        result = worker.send(name, *args)
        outcome = result.get(timeout=120, on_message=_kill_when_started(child_pid))
        if outcome["pid"] != child_pid:
            return outcome, child_pid
        # Finished before the kill landed: the next task goes to the replacement process.
        child_pid = worker.call("aperag_pg.pool_probe", 0.0, timeout=60)["pid"]
    raise AssertionError(f"{name} always finished before its process could be killed")


def test_a_query_and_a_workflow_resume_whose_worker_is_killed_complete(
    service_env, manager, tmp_path
):
    """kill -9 during a query and during a LangGraph resume: each is delivered again and
    completes, and the workflow's steps each ran once."""
    from aperag_pg.checkpoint import PGSyncCheckpointSaver

    PGSyncCheckpointSaver(schema="public").setup()
    workspace, thread = new_workspace("killq"), f"killed-{uuid.uuid4().hex[:8]}"
    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    with celery_worker(env, tmp_path, pool="prefork", concurrency=1, cwd=REPO_ROOT) as worker:
        child = worker.call("aperag_pg.lightrag_ingest", workspace, DOCS, FILE_PATHS, timeout=180)[
            "pid"
        ]
        answer, victim = _interrupted(
            worker, child, "aperag_pg.lightrag_query", workspace, QUESTION, "local"
        )
        started = worker.call("aperag_pg.checkpoint_demo_start", thread, "crashes", timeout=120)
        resumed, resume_victim = _interrupted(
            worker, started["pid"], "aperag_pg.checkpoint_demo_resume", thread, "yes"
        )
    assert answer["pid"] != victim and answer["context_chars"] > 500
    assert resumed["pid"] != resume_victim
    assert resumed["state"]["draft"] == "A short note about crashes. (published)"
    steps = [entry.split("@")[0] for entry in resumed["state"]["log"]]
    assert steps == ["draft", "review", "publish"] and resumed["next"] == []


def test_a_warm_stop_during_ingests_finishes_or_hands_back_every_one(
    service_env, admin_conn, tmp_path
):
    """`make worker-stop` while ingests run and others wait: the running ones finish, the
    waiting ones go back to the queue, and the next worker completes them; none is lost.
    (One workspace, so its ingests take turns on its writer lock and many still wait.)"""
    from devtools.corpus import documents

    env = {**service_env, "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag")}
    run_dir = tmp_path / "run"
    client = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    batches = [documents(5, start=100 * i) for i in range(12)]
    workspace = new_workspace("stop")
    try:
        make_ok("worker-start", env, run_dir)
        sent = [
            client.send_task(
                "aperag_pg.lightrag_ingest",
                args=(workspace, [t for t, _ in batch], [p for _, p in batch]),
            )
            for batch in batches
        ]
        while first_writer(admin_conn) is None:  # an ingest is under way
            assert not all(r.ready() for r in sent)
        make_ok("worker-stop", env, run_dir)  # warm: waits for the running tasks
        finished_by_first = sum(r.ready() for r in sent)
        make_ok("worker-start", env, run_dir)
        outcomes = [r.get(timeout=300) for r in sent]
    finally:
        stopped = make("worker-stop", env, run_dir)
        client.close()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert 1 <= finished_by_first < len(sent)  # some ran through the stop, some waited
    assert all(set(o["statuses"].values()) == {"processed"} for o in outcomes)
    assert _status_counts(admin_conn, workspace) == {"processed": 5 * len(batches)}
