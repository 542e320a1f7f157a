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
and the p99 wait for a pooled connection of the worst worker process (each logs its
pool's statistics when it stops); the mean and longest wait of a client for one of
PgBouncer's server connections. Then, with 3 hosts, a visibility timeout of 60 s and a
writer-lease TTL of 15 s, the host that holds a writer lease is lost at once (SIGKILL to
its PID namespace) mid-batch: the time until the other hosts have finished every ingest.

    python -m bench.scale_out [--quick]
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from aperag_pg.settings import PostgresSettings
from bench.common import benchmark_services, machine_line, run_benchmark
from devtools.corpus import documents
from devtools.pgbouncer import EmbeddedPgBouncer
from devtools.services import celery_worker

REPO = Path(__file__).resolve().parent.parent
HOSTS = (1, 2, 3)
PROCESSES_PER_HOST = 2
SERVER_POOL = 4  # PgBouncer's server connections, the same for every number of hosts


class BouncerSampler:
    """PgBouncer watched from a thread every SAMPLE_S while a batch runs: the most server
    connections it had open, and the longest any client had been waiting for one."""

    SAMPLE_S = 0.1  # a sampling period: the batch is not waited on with it

    def __init__(self, bouncer: EmbeddedPgBouncer) -> None:
        self.bouncer = bouncer
        self.most_servers = 0
        self.longest_wait_ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BouncerSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_S):
            servers = self.bouncer.show("SERVERS")
            self.most_servers = max(
                self.most_servers, sum(1 for s in servers if s["database"] != "pgbouncer")
            )
            for pool in self.bouncer.show("POOLS"):
                if pool["database"] != "pgbouncer":
                    waited = pool["maxwait"] * 1000 + pool["maxwait_us"] / 1000
                    self.longest_wait_ms = max(self.longest_wait_ms, waited)


def _bouncer_totals(bouncer: EmbeddedPgBouncer) -> tuple[int, int]:
    """PgBouncer's transactions so far, and the microseconds clients spent waiting for a
    server connection in all."""
    rows = [row for row in bouncer.show("STATS") if row["database"] != "pgbouncer"]
    return sum(r["total_xact_count"] for r in rows), sum(r["total_wait_time"] for r in rows)


def run_batch(hosts: list, bouncer, workspaces: int, docs: int, first: int) -> dict:
    """One batch across ``hosts``: an ingest of ``docs`` documents into each of
    ``workspaces`` new workspaces, then a query on each; timed until every result is in."""
    names = [f"so_{uuid.uuid4().hex[:6]}" for _ in range(workspaces)]
    corpus = documents(workspaces * docs, start=first)
    sender = hosts[0]
    xacts_before, waited_before = _bouncer_totals(bouncer)
    with BouncerSampler(bouncer) as sampler:
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
        ingested = [task.get(timeout=600) for task in ingests]
        queries = [
            sender.send("aperag_pg.lightrag_query", name, "What does Bob Smith lead?", "hybrid")
            for name in names
        ]
        answered = [task.get(timeout=600) for task in queries]
        elapsed = time.perf_counter() - start
    xacts, waited = _bouncer_totals(bouncer)
    processed = sum(r["status_counts"].get("processed", 0) for r in ingested)
    if processed != workspaces * docs or not all(r.get("answer") for r in answered):
        raise RuntimeError(f"a batch did not finish its work: {processed} documents processed")
    return {
        "seconds": elapsed,
        "tasks": len(ingested) + len(answered),
        "docs": processed,
        "most_servers": sampler.most_servers,
        "bouncer_longest_wait_ms": sampler.longest_wait_ms,
        "bouncer_mean_wait_ms": (waited - waited_before) / 1000 / max(1, xacts - xacts_before),
    }


_CLOSED_POOL = re.compile(r"aperag_pg closed in worker process \d+ \(stats: (\{.*\})\)")


def pool_stats_at_exit(logs: list[Path]) -> list[dict]:
    """The pool statistics each worker process logged when it stopped (those that opened
    a pool: a prefork worker's main process logs a line too, with none)."""
    logged = [
        ast.literal_eval(match)
        for log in logs
        for match in _CLOSED_POOL.findall(log.read_text(errors="replace"))
    ]
    return [stats for stats in logged if "requests_num" in stats]


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
        while not (holders := _lease_namespaces(settings) & set(by_namespace)):
            if all(task.ready() for task in tasks):
                raise RuntimeError("every ingest ended before a host could be lost")
            time.sleep(0.1)  # a polling period; the clock starts at the loss
        victim = by_namespace[min(holders)]
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
                    logs = [host.log for host in hosts]
                # the hosts stopped: each worker process logged its pool's statistics
                processes = pool_stats_at_exit(logs)
                if len(processes) < count * PROCESSES_PER_HOST:
                    raise RuntimeError(f"{len(processes)} worker processes logged pool stats")
                rows[count]["pool_timeouts"] = sum(p["requests_timeouts"] for p in processes)
                rows[count]["worst_p99_wait_ms"] = max(p["requests_wait_p99_ms"] for p in processes)
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
        "server connections | PoolTimeouts | pool wait p99, worst process | PgBouncer wait "
        "per transaction, mean | PgBouncer's longest client wait |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, row in rows.items():
        lines.append(
            f"| {count} | {count * PROCESSES_PER_HOST} | {row['seconds']:.1f} | "
            f"{row['tasks'] / row['seconds']:.2f} | {row['docs'] / row['seconds']:.2f} | "
            f"{one['seconds'] / row['seconds']:.2f}x | {row['most_servers']} | "
            f"{row['pool_timeouts']} | {row['worst_p99_wait_ms']} ms | "
            f"{row['bouncer_mean_wait_ms']:.2f} ms | {row['bouncer_longest_wait_ms']:.0f} ms |"
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
