"""Chaos under load: a prefork worker of two processes ingests 60 documents into two
workspaces in 12 tasks and runs 10 LangGraph workflows, while PostgreSQL is restarted
twice, every application backend is terminated twice and every TCP connection is cut
twice, each at a moment when work is under way.

At the end every task succeeded (retries allowed), every document is processed exactly
once with no ``dup-`` record, every workflow reached its end, the pools counted the
connections they lost, and a warm shutdown leaves no connection behind.
"""

from __future__ import annotations

import random
import uuid

from devtools.chaos import FAULTS, ChaosTarget, closed_pool_stats, run_faults
from devtools.corpus import documents
from devtools.services import celery_worker

from .conftest import REPO_ROOT

DOCS_PER_TASK, TASKS_PER_WORKSPACE, WORKFLOWS = 5, 6, 10


def _processed(target: ChaosTarget) -> int:
    try:
        rows = target.query("SELECT count(*) FROM lightrag_doc_status WHERE status = 'processed'")
    except Exception:  # down for a restart, or not created yet: no news
        return -1
    return rows[0][0]


def test_tasks_succeed_and_nothing_is_lost_under_faults(service_env, tmp_path):
    rng = random.Random(20261204)
    schedule = list(FAULTS) * 2
    rng.shuffle(schedule)
    workspaces = [f"chaos_{uuid.uuid4().hex[:6]}_{side}" for side in "ab"]
    corpus = documents(DOCS_PER_TASK * TASKS_PER_WORKSPACE * len(workspaces))
    with ChaosTarget(tmp_path) as target:
        env = {
            **service_env,
            **target.worker_settings().to_env(),
            "POSTGRES_MAX_CONNECTIONS": "3",
            "LIGHTRAG_WORKING_DIR": str(tmp_path / "rag"),
        }
        with celery_worker(env, tmp_path, concurrency=2, cwd=REPO_ROOT) as worker:
            worker.call("aperag_pg.lightrag_status", workspaces[0], timeout=120)  # tables
            ingests, chunks = [], iter(range(0, len(corpus), DOCS_PER_TASK))
            for _ in range(TASKS_PER_WORKSPACE):
                for workspace in workspaces:
                    batch = corpus[next(chunks) :][:DOCS_PER_TASK]
                    texts, paths = [t for t, _ in batch], [p for _, p in batch]
                    ingests.append(
                        worker.send("aperag_pg.lightrag_ingest", workspace, texts, paths)
                    )
            threads = [f"chaos-{uuid.uuid4().hex}" for _ in range(WORKFLOWS)]
            starts = [
                worker.send("aperag_pg.checkpoint_demo_start", thread, "faults")
                for thread in threads
            ]
            injected = run_faults(
                target,
                schedule,
                progress=lambda: _processed(target),
                done=lambda: all(r.ready() for r in ingests),
                every=rng.randint(2, 4),
            )
            ingested = [r.get(timeout=300) for r in ingests]
            started = [r.get(timeout=120) for r in starts]
            resumed = [
                worker.call("aperag_pg.checkpoint_demo_resume", thread, "yes", timeout=120)
                for thread in threads
            ]
            assert worker.warm_shutdown(timeout=120) == 0
            log = worker.log_text()
        left = target.app_connections()
        stored = target.document_tally()
        checkpoints = target.query(
            "SELECT thread_id, count(*) FROM checkpoints WHERE thread_id = ANY(%s) GROUP BY 1",
            (threads,),
        )

    assert injected == schedule, f"the work ended before every fault: {injected}"
    per_workspace = DOCS_PER_TASK * TASKS_PER_WORKSPACE
    assert stored == dict.fromkeys(workspaces, (per_workspace, 0, 0))  # processed, no dup-
    for result in ingested:
        assert set(result["statuses"].values()) == {"processed"}, result
    for begun, done in zip(started, resumed, strict=True):
        assert begun["next"] == ["review"]
        assert done["next"] == [] and done["state"]["draft"].endswith("(published)")
    assert len(checkpoints) == WORKFLOWS and all(n >= 5 for _, n in checkpoints)
    stats = closed_pool_stats(log)
    assert len(stats) == 2, log[-3000:]
    assert sum(s["connections_lost"] for s in stats.values()) >= len(injected)
    assert left == 0
    assert log.count("Retry in") >= 1  # faults hit running tasks, which were retried
