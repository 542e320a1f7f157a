"""End-to-end tasks/s through a real prefork Celery worker with 1, 2 and 4 processes.

The same batch each time, on the same PostgreSQL and Redis: LightRAG ingest tasks
(5 documents each, offline stand-in models) and queries on the PGSync storages, plus
LangGraph workflows started and resumed from their checkpoints, and pool probes.

    python -m bench.worker_throughput [--quick]
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2

from aperag_pg.lightrag.preflight import check_vector_tables
from aperag_pg.lightrag.writer import WRITER_LEASE_PREFIX
from aperag_pg.settings import PostgresSettings
from aperag_pg.stores.leases import live_holders
from bench.common import benchmark_services, machine_line, run_benchmark
from devtools.corpus import documents
from devtools.services import celery_worker

REPO = Path(__file__).resolve().parent.parent
PROCESSES = (1, 2, 4)
WORKSPACES = 4
INGEST_WORKSPACES = (1, 2, 4)


def run_batch(
    worker, workspaces: list[str], first_doc: int, docs: int, workflows: int, probes: int
) -> tuple[float, list[dict]]:
    """One batch. Ingest tasks go round-robin to the workspaces: LightRAG takes one writer
    per workspace at a time, so tenants are what ingestion runs in parallel over."""
    corpus = documents(docs, start=first_doc)
    start = time.perf_counter()
    pending = [
        worker.send(
            "aperag_pg.lightrag_ingest",
            workspaces[(i // 5) % len(workspaces)],
            [t for t, _ in corpus[i : i + 5]],
            [p for _, p in corpus[i : i + 5]],
        )
        for i in range(0, docs, 5)
    ]
    threads = [f"tp-{uuid.uuid4().hex[:8]}" for _ in range(workflows)]
    pending += [worker.send("aperag_pg.checkpoint_demo_start", t, "throughput") for t in threads]
    pending += [worker.send("aperag_pg.pool_probe", 0.0) for _ in range(probes)]
    results = [r.get(timeout=900) for r in pending]
    later = [worker.send("aperag_pg.checkpoint_demo_resume", t, "yes") for t in threads]
    later += [
        worker.send(
            "aperag_pg.lightrag_query",
            workspaces[i % len(workspaces)],
            "Who works with Acme Robotics?",
            "hybrid",
        )
        for i in range(docs // 10)
    ]
    results += [r.get(timeout=900) for r in later]
    return time.perf_counter() - start, results


def ingest_docs_per_second(worker, workspaces: int, docs: int, first_doc: int) -> float:
    """Documents per second for ``docs`` documents, 5 per task, over fresh workspaces."""
    names = [f"ing_{uuid.uuid4().hex[:6]}" for _ in range(workspaces)]
    for name in names:  # every process builds its LightRAG for them before the clock starts
        worker.call("aperag_pg.lightrag_status", name, timeout=120)
    corpus = documents(docs, start=first_doc)
    start = time.perf_counter()
    pending = [
        worker.send(
            "aperag_pg.lightrag_ingest",
            names[(i // 5) % workspaces],
            [t for t, _ in corpus[i : i + 5]],
            [p for _, p in corpus[i : i + 5]],
        )
        for i in range(0, docs, 5)
    ]
    for result in pending:
        result.get(timeout=900)
    return docs / (time.perf_counter() - start)


def _writer_pid(cur) -> int | None:
    """The worker process holding a workspace's writer lease right now."""
    holders = live_holders(cur, WRITER_LEASE_PREFIX)
    return holders[0][1] if holders else None


def redelivery_seconds(worker, settings: PostgresSettings, docs: int, killed: bool) -> float:
    """Seconds for one ingest task of ``docs`` documents; with ``killed``, the process
    holding its workspace's lease is SIGKILLed once it holds it, and the task delivered again."""
    name = f"kill_{uuid.uuid4().hex[:6]}"
    worker.call("aperag_pg.lightrag_status", name, timeout=120)
    corpus = documents(docs, start=50_000 + (docs if killed else 0))
    start = time.perf_counter()
    result = worker.send(
        "aperag_pg.lightrag_ingest", name, [t for t, _ in corpus], [p for _, p in corpus]
    )
    if killed:
        conn = psycopg2.connect(**settings.connect_kwargs(application_name="bench"))
        conn.autocommit = True
        with conn, conn.cursor() as cur:
            while not result.ready():
                pid = _writer_pid(cur)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    break
        conn.close()
    outcome = result.get(timeout=900)
    assert set(outcome["statuses"].values()) == {"processed"}, outcome["statuses"]
    return time.perf_counter() - start


def startup_check_ms(settings: PostgresSettings, env: dict[str, str], runs: int) -> list[float]:
    """Milliseconds of the embedding check each worker runs at start (build the models'
    arguments, read the vector tables and whether they hold rows), on a fresh connection."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        conn = psycopg2.connect(**settings.connect_kwargs(application_name="bench"))
        conn.autocommit = True
        try:
            assert check_vector_tables(conn, settings.schema, env) == []
        finally:
            conn.close()
        times.append((time.perf_counter() - start) * 1000)
    return times


def run(quick: bool) -> str:
    docs, workflows, probes = (40, 10, 40) if quick else (100, 40, 200)
    ingest_docs = 20 if quick else 60
    rows = []
    matrix: dict[tuple[int, int], float] = {}
    redelivery: dict[str, list[float]] = {"uninterrupted": [], "killed once": []}
    with benchmark_services() as services, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            **services,
            "PYTHONPATH": str(REPO),
            "LIGHTRAG_WORKING_DIR": str(Path(tmp) / "rag"),
            "LLM_BINDING": "standin",  # measured with the offline stand-ins, by name
        }
        for processes in PROCESSES:
            with celery_worker(
                env, Path(tmp), pool="prefork", concurrency=processes, cwd=REPO
            ) as worker:
                # Warm up in the same workspace, so every process has built its LightRAG
                # instance (once per process and workspace) before the clock starts.
                workspaces = [f"tp_{uuid.uuid4().hex[:6]}" for _ in range(WORKSPACES)]
                run_batch(worker, workspaces, 10_000, 20 * processes, 2 * processes, 4)
                elapsed, results = run_batch(worker, workspaces, 0, docs, workflows, probes)
                for count in INGEST_WORKSPACES:
                    matrix[processes, count] = ingest_docs_per_second(
                        worker, count, ingest_docs, 20_000 + 1000 * count
                    )
                if processes == 2:
                    settings = PostgresSettings.from_env(env)
                    for _ in range(1 if quick else 3):
                        for label, killed in (("uninterrupted", False), ("killed once", True)):
                            redelivery[label].append(
                                redelivery_seconds(worker, settings, ingest_docs, killed)
                            )
                assert worker.warm_shutdown() == 0
            db_ms = [r["db_ms"] for r in results if "db_ms" in r]
            rows.append(
                (
                    processes,
                    len(results),
                    elapsed,
                    statistics.median(db_ms),
                    len({r["pid"] for r in results}),
                )
            )
        check_ms = startup_check_ms(PostgresSettings.from_env(env), env, 5 if quick else 20)
    base = rows[0][1] / rows[0][2]
    lines = [
        "## End-to-end tasks/s through a prefork worker (`bench/worker_throughput.py`)",
        "",
        f"{machine_line()}; one batch per row: {docs} documents in {docs // 5} LightRAG ingest "
        f"tasks over {WORKSPACES} workspaces, {docs // 10} hybrid queries, {workflows} "
        f"LangGraph workflows started and resumed, {probes} pool probes (offline stand-ins).",
        "",
        "| worker processes | tasks | seconds | tasks/s | vs 1 process | db time per task p50 (ms) "
        "| processes that ran tasks |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for processes, tasks, elapsed, db_p50, pids in rows:
        rate = tasks / elapsed
        lines.append(
            f"| {processes} | {tasks} | {elapsed:.1f} | {rate:.1f} | {rate / base:.2f}x "
            f"| {db_p50:.1f} | {pids} |"
        )
    lines += [
        "",
        f"The machine has {os.cpu_count()} CPUs: past that many processes the stand-in "
        "models and LightRAG's own work compete for CPU, so throughput stops growing.",
        "",
        f"Ingest alone: {ingest_docs} documents, 5 per task, into fresh workspaces; documents "
        "per second. One workspace's writers take turns (its writer lease); several "
        "workspaces ingest in parallel on different processes.",
        "",
        "| worker processes | " + " | ".join(f"{w} workspace(s)" for w in INGEST_WORKSPACES) + " |",
        "|---:|" + "---:|" * len(INGEST_WORKSPACES),
    ]
    for processes in PROCESSES:
        cells = " | ".join(f"{matrix[processes, w]:.1f}" for w in INGEST_WORKSPACES)
        lines.append(f"| {processes} | {cells} |")
    plain, killed = (statistics.median(redelivery[k]) for k in ("uninterrupted", "killed once"))
    lines += [
        "",
        f"Redelivery: one ingest task of {ingest_docs} documents with 2 processes, median of "
        f"{len(redelivery['killed once'])}: {plain:.1f} s uninterrupted; {killed:.1f} s when the "
        "process holding the workspace's lease is killed (SIGKILL) as soon as it holds it, "
        f"so the task is delivered again a second later and resumed: {killed - plain:+.1f} s.",
        "",
        f"Start-up check: the embedding-dimension check a worker runs once at start, before "
        f"any task (LightRAG arguments built, vector tables read on a new connection), takes "
        f"{statistics.median(check_ms):.1f} ms (median of {len(check_ms)}; max "
        f"{max(check_ms):.1f} ms).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "worker-throughput")
