"""Throughput as worker hosts are added, at a fixed PgBouncer server pool.

Hosts are simulated on this machine (``devtools.services.celery_worker(host=...)``): each a
prefork worker of 2 processes in UTS, PID and mount namespaces of its own, all consuming
one queue, all through one real PgBouncer in transaction mode whose server pool stays
the same whatever the number of hosts. The models are the offline stand-ins behind a
hosted model's latency (200 ms per LLM request, 50 ms per embedding request:
``devtools.slow_models``), so that the work is paced by the model and not by this
machine's two CPUs, as in production.

The same batch with 1, 2 and 3 hosts: one LightRAG ingest task per workspace (LightRAG
takes one writer per workspace, so workspaces are what ingestion runs in parallel over),
then a hybrid query per workspace. Reported: tasks/s and documents/s, each against one
host; the most server connections PgBouncer had open (sampled all along); PoolTimeouts
in the workers' logs. Then, with 3 hosts, a visibility timeout of 60 s and a writer-lease
TTL of 15 s, the host that holds a writer lease is lost at once (SIGKILL to its PID
namespace) mid-batch: the time until the other hosts have finished every ingest.

    python bench/scale_out.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import benchmark_services, machine_line, run_benchmark  # noqa: E402

from aperag_pg.settings import PostgresSettings  # noqa: E402
from devtools.corpus import documents  # noqa: E402
from devtools.pgbouncer import EmbeddedPgBouncer  # noqa: E402
from devtools.services import celery_worker  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOSTS = (1, 2, 3)
PROCESSES_PER_HOST = 2
SERVER_POOL = 4  # PgBouncer's server connections, the same for every number of hosts


def _server_connections(bouncer: EmbeddedPgBouncer) -> int:
    return sum(1 for server in bouncer.show("SERVERS") if server["database"] != "pgbouncer")


def run_batch(hosts: list, bouncer, workspaces: int, docs: int, first: int) -> dict:
    """One batch across ``hosts``: an ingest of ``docs`` documents into each of
    ``workspaces`` new workspaces, then a query on each; timed until every result is in."""
    names = [f"so_{uuid.uuid4().hex[:6]}" for _ in range(workspaces)]
    corpus = documents(workspaces * docs, start=first)
    sender = hosts[0]
    start = time.perf_counter()
    ingests = [
        sender.send(
            "aperag_pg.lightrag_ingest",
            name,
            [t for t, _ in corpus[i * docs : (i + 1) * docs]],
            [p for _, p in corpus[i * docs : (i + 1) * docs]],
        )
        for i, name in enumerate(names)
    ]
    most = 0
    while not all(task.ready() for task in ingests):
        most = max(most, _server_connections(bouncer))
    ingested = [task.get(timeout=10) for task in ingests]
    queries = [
        sender.send("aperag_pg.lightrag_query", name, "What does Bob Smith lead?", "hybrid")
        for name in names
    ]
    while not all(task.ready() for task in queries):
        most = max(most, _server_connections(bouncer))
    answered = [task.get(timeout=10) for task in queries]
    elapsed = time.perf_counter() - start
    processed = sum(r["status_counts"].get("processed", 0) for r in ingested)
    if processed != workspaces * docs or not all(r.get("answer") for r in answered):
        raise RuntimeError(f"a batch did not finish its work: {processed} documents processed")
    return {
        "seconds": elapsed,
        "tasks": len(ingested) + len(answered),
        "docs": processed,
        "most_servers": most,
    }


RECOVERY_SETTINGS = {"CELERY_VISIBILITY_TIMEOUT": "60", "LIGHTRAG_WRITER_LEASE_TTL": "15"}


def _lease_namespaces(settings: PostgresSettings) -> set[str]:
    """PID namespaces of the processes holding a LightRAG writer lease now."""
    import psycopg2

    conn = psycopg2.connect(**settings.connect_kwargs("scale-out-observer"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('aperag_pg_leases') IS NOT NULL")
            if not cur.fetchone()[0]:
                return set()
            cur.execute(
                "SELECT holder FROM aperag_pg_leases WHERE starts_with(name, "
                "'lightrag-writer:') AND expires_at > clock_timestamp()"
            )
            return {holder.split(":")[3] for (holder,) in cur.fetchall()}
    finally:
        conn.close()


def recovery_seconds(env: dict, tmp: Path, settings: PostgresSettings, docs: int) -> float:
    """Seconds from the loss of a host that holds a writer lease to every ingest of the
    batch finished by the other two."""
    queue = f"lost-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        hosts = [
            stack.enter_context(
                celery_worker(
                    {**env, **RECOVERY_SETTINGS},
                    tmp,
                    concurrency=PROCESSES_PER_HOST,
                    cwd=REPO,
                    host=f"host{n}",
                    queue=queue,
                )
            )
            for n in range(3)
        ]
        by_namespace = {host.pid_namespace(): host for host in hosts}
        corpus = documents(6 * docs, start=90_000)
        tasks = [
            hosts[0].send(
                "aperag_pg.lightrag_ingest",
                f"lost_{uuid.uuid4().hex[:6]}",
                [t for t, _ in corpus[i * docs : (i + 1) * docs]],
                [p for _, p in corpus[i * docs : (i + 1) * docs]],
            )
            for i in range(6)
        ]
        victim = None
        while victim is None:
            holders = _lease_namespaces(settings) & set(by_namespace)
            victim = by_namespace[min(holders)] if holders else None
            if all(task.ready() for task in tasks):
                raise RuntimeError("every ingest ended before a host could be lost")
        victim.kill_host()
        lost_at = time.perf_counter()
        results = [task.get(timeout=600) for task in tasks]
        seconds = time.perf_counter() - lost_at
    if any(set(r["statuses"].values()) != {"processed"} for r in results):
        raise RuntimeError("an ingest did not process every document after the host loss")
    return seconds


def run(quick: bool) -> str:
    workspaces, docs = (6, 3) if quick else (12, 10)
    rows = {}
    with benchmark_services() as services, tempfile.TemporaryDirectory() as tmp:
        settings = PostgresSettings.from_env({**os.environ, **services})
        bouncer = EmbeddedPgBouncer(
            Path(tmp) / "pgbouncer",
            settings,
            users={settings.user: settings.password},
            default_pool_size=SERVER_POOL,
        ).start()
        try:
            routed = bouncer.route(settings, application_name="scale_out")
            env = {
                **os.environ,
                **services,
                **routed.to_env(),
                "PYTHONPATH": str(REPO),
                "LIGHTRAG_WORKING_DIR": str(Path(tmp) / "rag"),
                "LIGHTRAG_FACTORY": "devtools.slow_models:lightrag_arguments",
            }
            for count in HOSTS:
                queue = f"scale-{uuid.uuid4().hex[:6]}"
                with ExitStack() as stack:
                    hosts = [
                        stack.enter_context(
                            celery_worker(
                                env,
                                Path(tmp),
                                concurrency=PROCESSES_PER_HOST,
                                cwd=REPO,
                                host=f"host{n}",
                                queue=queue,
                            )
                        )
                        for n in range(count)
                    ]
                    # every process builds its LightRAG instances before the clock starts
                    run_batch(hosts, bouncer, PROCESSES_PER_HOST * count, 1, 50_000 + count * 100)
                    rows[count] = run_batch(hosts, bouncer, workspaces, docs, count * 1000)
                    logs = "".join(host.log_text() for host in hosts)
                    rows[count]["pool_timeouts"] = logs.count("PoolTimeout")
            recovery = recovery_seconds(env, Path(tmp), settings, docs)
        finally:
            bouncer.stop()
    return report(rows, workspaces, docs, recovery)


def report(rows: dict, workspaces: int, docs: int, recovery: float) -> str:
    one = rows[1]
    lines = [
        "## Throughput as worker hosts are added (`bench/scale_out.py`)",
        "",
        f"{machine_line()}; simulated hosts (each a prefork worker of {PROCESSES_PER_HOST} "
        "processes in namespaces of its own, its own hostname), one queue, one PgBouncer in "
        f"transaction mode with {SERVER_POOL} server connections whatever the number of "
        "hosts, one PostgreSQL, one Redis; stand-in models behind 200 ms per LLM request and "
        f"50 ms per embedding request. One batch: {workspaces} workspaces, an ingest of "
        f"{docs} documents into each, then a hybrid query on each.",
        "",
        "| hosts | worker processes | seconds | tasks/s | documents/s | vs 1 host | most "
        "server connections | PoolTimeouts |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, row in rows.items():
        lines.append(
            f"| {count} | {count * PROCESSES_PER_HOST} | {row['seconds']:.1f} | "
            f"{row['tasks'] / row['seconds']:.2f} | {row['docs'] / row['seconds']:.2f} | "
            f"{one['seconds'] / row['seconds']:.2f}x | {row['most_servers']} | "
            f"{row['pool_timeouts']} |"
        )
    speedups = {count: one["seconds"] / row["seconds"] for count, row in rows.items()}

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    no_timeouts = not any(r["pool_timeouts"] for r in rows.values())
    in_budget = all(r["most_servers"] <= SERVER_POOL for r in rows.values())
    lines += [
        "",
        f"Targets: 2 hosts at least 1.8x one host ({speedups.get(2, 0):.2f}x, "
        f"{met(speedups.get(2, 0) >= 1.8)}), 3 hosts at least 2.5x ({speedups.get(3, 0):.2f}x, "
        f"{met(speedups.get(3, 0) >= 2.5)}), no PoolTimeout ({met(no_timeouts)}), server "
        f"connections never above {SERVER_POOL} ({met(in_budget)}).",
        "",
        f"A host lost (3 hosts, 6 ingests of {docs} documents; the lost host held a writer "
        f"lease): every ingest finished by the other two **{recovery:.1f} s** after the loss, "
        f"with a visibility timeout of {RECOVERY_SETTINGS['CELERY_VISIBILITY_TIMEOUT']} s and "
        f"a lease TTL of {RECOVERY_SETTINGS['LIGHTRAG_WRITER_LEASE_TTL']} s (target: within "
        f"their sum + 30 s = 105 s: {met(recovery <= 105)}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "scale-out")
