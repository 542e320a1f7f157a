"""Chaos under a steady load: tasks/s before, during and after faults, and the longest stall.

A prefork worker (2 processes, offline stand-in models) keeps a steady mix in flight:
LightRAG ingests into two workspaces (2 documents a task), queries, and LangGraph
workflows started and resumed. After a quiet phase, PostgreSQL is restarted, every
application backend terminated and every TCP connection cut, each twice, in a random
order and at random moments; then a quiet phase again. PostgreSQL is a dedicated
embedded server (it is restarted), reached through a loopback TCP proxy.

At the end it checks what the chaos test checks: every task succeeded (retries
allowed), every document processed exactly once, no ``dup-`` record, every workflow at
its end, and no connection left after a warm shutdown.

    python -m bench.chaos [--quick]
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import machine_line, run_benchmark
from bench.load import IN_FLIGHT, REPO, SteadyLoad, worker_env
from devtools.chaos import FAULTS, ChaosTarget, closed_pool_stats
from devtools.services import EmbeddedRedis, celery_worker

FAULT_GAP = (3.0, 6.0)  # seconds between faults, drawn at random


def rate(done: list[tuple[float, str, dict]], start: float, end: float) -> float:
    return sum(start <= t < end for t, _, _ in done) / (end - start)


def longest_stall(done: list[tuple[float, str, dict]], start: float, end: float) -> float:
    """The longest time between two completions (or a phase edge and one) in [start, end)."""
    times = [start, *sorted(t for t, _, _ in done if start <= t < end), end]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def run(quick: bool) -> str:
    rng = random.Random(20261204)
    quiet = 8.0 if quick else 30.0
    schedule = list(FAULTS) * 2
    rng.shuffle(schedule)
    with tempfile.TemporaryDirectory(prefix="apg-chaos-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        redis = None if os.environ.get("REDIS_URL") else EmbeddedRedis(base / "redis").start()
        try:
            with ChaosTarget(base) as target:
                report = _run(target, base, redis, rng, quiet, schedule)
        finally:
            if redis is not None:
                redis.stop()
    return report


def _run(target, base, redis, rng, quiet, schedule) -> str:
    services = {
        **target.worker_settings().to_env(),
        "REDIS_URL": os.environ.get("REDIS_URL") or redis.url,
    }
    env = worker_env(services, base)
    workspaces = [f"chaos_{uuid.uuid4().hex[:6]}_{side}" for side in "ab"]
    with celery_worker(env, base, concurrency=2, cwd=REPO) as worker:
        worker.call("aperag_pg.lightrag_status", workspaces[0], timeout=120)
        load = SteadyLoad(worker, workspaces)
        load.run_for(5.0)  # warm-up: both processes have built their LightRAG
        t0 = time.monotonic()
        load.run_for(quiet)
        t1 = time.monotonic()
        for fault in schedule:
            load.run_for(rng.uniform(*FAULT_GAP))
            target.inject(fault)
        load.run_for(rng.uniform(*FAULT_GAP))
        t2 = time.monotonic()
        load.run_for(quiet)
        t3 = time.monotonic()
        load.drain()
        assert worker.warm_shutdown(timeout=180) == 0
        log = worker.log_text()
    left = target.app_connections()
    stored = target.document_tally()
    stats = closed_pool_stats(log)
    done = load.done
    for workspace, docs in load.ingested_docs.items():
        assert stored[workspace] == (docs, 0, 0), (workspace, stored[workspace], docs)
    assert left == 0, f"{left} connections left after the warm shutdown"
    retries = log.count("Retry in")
    lost = [s["connections_lost"] for s in stats.values()]
    lines = [
        "## Chaos under load (`bench/chaos.py`)",
        "",
        f"{machine_line()}. A prefork worker (2 processes, offline stand-in models, "
        f"POSTGRES_MAX_CONNECTIONS=3) with {IN_FLIGHT} tasks always in flight (ingests of 2 "
        "documents into two workspaces, queries, LangGraph workflows started and resumed). "
        f"Faults, in this order, {FAULT_GAP[0]:g}-{FAULT_GAP[1]:g} s apart: "
        f"{', '.join(schedule)}.",
        "",
        "| phase | seconds | tasks done | tasks/s | longest stall (s) |",
        "|---|---|---|---|---|",
    ]
    for name, start, end in (("before", t0, t1), ("during faults", t1, t2), ("after", t2, t3)):
        count = sum(start <= t < end for t, _, _ in done)
        lines.append(
            f"| {name} | {end - start:.1f} | {count} | {rate(done, start, end):.2f} | "
            f"{longest_stall(done, start, end):.2f} |"
        )
    lines += [
        "",
        f"All {len(done)} tasks succeeded ({retries} retries of tasks hit by a fault). "
        f"Documents: {sum(load.ingested_docs.values())} ingested, each processed exactly once, "
        f"no `dup-` record; {len(load.threads_done)} workflows resumed to their end. "
        f"Connections lost per worker process: {lost}. After the warm shutdown: {left} "
        "connections left.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "chaos")
