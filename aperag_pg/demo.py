"""``make demo``: a prefork Celery worker running tasks on aperag_pg's per-process pools.

Starts PostgreSQL (with pgvector) and Redis locally unless POSTGRES_* / REDIS_URL
point at running ones, starts ``celery -A config.celery worker --pool=prefork``,
submits a batch of tasks, shows progress, prints a summary and stops everything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from .devservices import (
    EmbeddedPostgres,
    EmbeddedRedis,
    celery_worker,
    connections_per_process,
    create_database,
    wait_for_no_connections,
)
from .settings import PostgresSettings


def _services(stack: ExitStack, tmp: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if os.environ.get("POSTGRES_HOST") or os.environ.get("POSTGRES_DSN"):
        print("PostgreSQL: using", PostgresSettings.from_env().describe())
    else:
        pg = EmbeddedPostgres(tmp / "pg").start()
        stack.callback(pg.stop)
        create_database(pg.settings(), "aperag_demo")
        env.update(pg.env("aperag_demo"))
        print(f"PostgreSQL 18 + pgvector: started on 127.0.0.1:{pg.port} (embedded)")
    if os.environ.get("REDIS_URL"):
        print("Redis: using REDIS_URL")
    else:
        redis_server = EmbeddedRedis(tmp / "redis").start()
        stack.callback(redis_server.stop)
        env["REDIS_URL"] = redis_server.url
        print(f"Redis: started on 127.0.0.1:{redis_server.port} (embedded)")
    return env


def run(tasks: int, concurrency: int) -> int:
    with tempfile.TemporaryDirectory(prefix="apg-demo-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        env = {**os.environ, **_services(stack, tmp), "PYTHONPATH": os.getcwd()}
        settings = PostgresSettings.from_env(env)
        worker = stack.enter_context(
            celery_worker(env, tmp, pool="prefork", concurrency=concurrency, cwd=os.getcwd())
        )
        print(f"worker: pid {worker.process.pid}, --pool=prefork --concurrency={concurrency}")
        started = time.perf_counter()
        pending = [
            worker.send("aperag_pg.async_pool_probe" if i % 2 else "aperag_pg.pool_probe", 0.0)
            for i in range(tasks)
        ]
        results = []
        for i, result in enumerate(pending, 1):
            results.append(result.get(timeout=120))
            if i % 10 == 0 or i == tasks:
                rate = i / (time.perf_counter() - started)
                print(f"\r  {i}/{tasks} tasks done, {rate:.0f} tasks/s", end="", flush=True)
        elapsed = time.perf_counter() - started
        print()
        connections = connections_per_process(settings)
        exit_code = worker.warm_shutdown()
        left = wait_for_no_connections(settings, set(connections))
    db_ms = sorted(r["db_ms"] for r in results)
    by_pid: dict[int, dict] = {}
    for r in results:
        by_pid[r["pid"]] = r["stats"]
    print("\nSummary")
    print(f"  tasks:                 {tasks} in {elapsed:.2f} s = {tasks / elapsed:.0f} tasks/s")
    print(
        f"  db time per task:      p50 {statistics.median(db_ms):.2f} ms, "
        f"p99 {db_ms[int(0.99 * (len(db_ms) - 1))]:.2f} ms (checkout, query, commit, return)"
    )
    for pid, stats in sorted(by_pid.items()):
        print(
            f"  worker process {pid}: {connections.get(pid, 0)} connection(s); "
            f"pool size {stats['pool_size']}/{stats['pool_max']}, "
            f"{stats['requests_num']} checkouts, {stats['connections_num']} opened, "
            f"{stats['requests_timeouts']} timeouts, {stats['connections_lost']} lost"
        )
    print(f"  warm shutdown:         exit code {exit_code}, connections left: {sum(left.values())}")
    return 0 if exit_code == 0 and not left else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aperag_pg.demo", description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    return run(args.tasks, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
