"""Per-task cost of the database layer: the patterns aperag_pg replaces, against ours.

Every "task" runs one ``SELECT 1``, the way a Celery task would at its start:

  (a) a new asyncpg pool per task inside ``asyncio.run``, one query, close
      (what an async library does when each task brings a new event loop);
  (b) ``psycopg2.connect`` per task, one query, close;
  (c) aperag_pg's worker pool: checkout, one query, return, in a transaction (the
      manager's ``get_connection``: psycopg2 sends BEGIN, the query, COMMIT); beside it,
      the same with the session check on return replaced by a bare autocommit reset (what
      it cost before), with ``POSTGRES_RESET_ON_RETURN`` (a RESET ALL round trip on every
      return), and a single read the way the stores read: ``cursors.cursor`` in
      ``Mode.AUTOCOMMIT``, one round trip (and in ``Mode.TRANSACTION``: BEGIN sent with
      the query, then COMMIT, two);
  (d) the same through ``asyncio.to_thread`` inside a fresh ``asyncio.run`` per task.

The floor is the raw round trip of ``SELECT 1`` on an already open psycopg2
connection. All run against the same server in the same run.

    python -m bench.task_overhead [--quick]
"""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg2

from aperag_pg.cursors import Mode, cursor
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.threads import to_thread
from aperag_pg.worker import cleanup_worker_postgres, run_async
from bench.common import benchmark_postgres, machine_line, run_benchmark, summary, time_calls


def select_one_on_our_pool() -> None:
    with Manager.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def select_one_read(mode: Mode = Mode.AUTOCOMMIT) -> None:
    with cursor(Manager, mode) as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def run(quick: bool) -> str:
    scale = 0.2 if quick else 1.0
    n_slow, n_fast = int(200 * scale), int(5000 * scale)
    with benchmark_postgres() as settings:
        kwargs = settings.connect_kwargs()
        asyncpg_kwargs = {
            "host": settings.host,
            "port": settings.port,
            "user": settings.user,
            "password": settings.password or None,
            "database": settings.database,
        }

        async def asyncpg_pool_task() -> None:
            pool = await asyncpg.create_pool(
                min_size=1, max_size=settings.max_connections, **asyncpg_kwargs
            )
            try:
                await pool.fetchval("SELECT 1")
            finally:
                await pool.close()

        def connect_per_task() -> None:
            conn = psycopg2.connect(**kwargs)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()
            finally:
                conn.close()

        async def to_thread_task() -> None:
            await asyncio.to_thread(select_one_on_our_pool)

        async def to_thread_noop_task() -> None:
            await asyncio.to_thread(int)

        async def shared_executor_task() -> None:
            await to_thread(select_one_on_our_pool)

        floor_conn = psycopg2.connect(**kwargs)
        floor_conn.autocommit = True
        floor_cur = floor_conn.cursor()

        def floor() -> None:
            floor_cur.execute("SELECT 1")
            floor_cur.fetchone()

        def bare_autocommit_reset(conn) -> None:
            if conn.autocommit:
                conn.autocommit = False

        pool = Manager.initialize(settings)
        try:
            results = {
                "floor": time_calls(floor, n_fast),
                "a": time_calls(lambda: asyncio.run(asyncpg_pool_task()), n_slow, warmup=3),
                "b": time_calls(connect_per_task, n_slow, warmup=3),
                "c": time_calls(select_one_on_our_pool, n_fast),
                "c_tx": time_calls(lambda: select_one_read(Mode.TRANSACTION), n_fast),
            }
            # a single read against the floor in alternating rounds, as below
            results["c_read"], results["floor_alternating"] = [], []
            for _ in range(10):
                results["c_read"] += time_calls(select_one_read, n_fast // 10)
                results["floor_alternating"] += time_calls(floor, n_fast // 10)
            # (c) with and without the session check, in alternating rounds: measured one
            # after the other, whichever runs later is faster (warmer caches, clocks).
            results["c_check"], results["c_bare"] = [], []
            for _ in range(10):
                results["c_check"] += time_calls(select_one_on_our_pool, n_fast // 10)
                pool._restore_session = bare_autocommit_reset  # what return did before
                results["c_bare"] += time_calls(select_one_on_our_pool, n_fast // 10)
                del pool._restore_session
            pool_stats = Manager.stats()
            Manager.initialize(settings.replace(reset_on_return=True))
            results["c_reset"] = time_calls(select_one_on_our_pool, n_fast)
            Manager.initialize(settings)
            results |= {
                "d": time_calls(lambda: asyncio.run(to_thread_task()), n_fast),
                "e": time_calls(lambda: asyncio.run(shared_executor_task()), n_fast),
                "f": time_calls(lambda: run_async(to_thread_task()), n_fast),
                "d0": time_calls(lambda: asyncio.run(to_thread_noop_task()), n_fast),
            }
        finally:
            cleanup_worker_postgres()  # closes the pool, the worker loop and the executor
            floor_conn.close()
    return report(results, pool_stats, n_slow, n_fast)


LABELS = {
    "a": "(a) new asyncpg pool per task (asyncio.run), 1 query, close",
    "b": "(b) psycopg2.connect per task, 1 query, close",
    "c": "(c) aperag_pg pool: checkout, 1 query, return",
    "c_read": "(c) a single read as the stores do it: cursor(Mode.AUTOCOMMIT), one round trip",
    "c_tx": "(c) the same in cursor(Mode.TRANSACTION): BEGIN sent with it, then COMMIT",
    "c_check": "(c) in alternating rounds: with the session check on return",
    "c_bare": "(c) in alternating rounds: the check replaced by a bare autocommit reset (before)",
    "c_reset": "(c) with POSTGRES_RESET_ON_RETURN=true (RESET ALL on every return)",
    "d": "(d) aperag_pg via asyncio.to_thread in a fresh asyncio.run",
    "e": "(e) aperag_pg.threads.to_thread (shared executor) in a fresh asyncio.run",
    "f": "(f) aperag_pg.worker.run_async (one loop per process) + asyncio.to_thread",
    "d0": "pattern floor of (d): asyncio.run + asyncio.to_thread of a no-op, no database",
    "floor": "floor: SELECT 1 on an open psycopg2 connection",
}


def report(results: dict, pool_stats: dict, n_slow: int, n_fast: int) -> str:
    s = {k: summary(v) for k, v in results.items()}
    lines = [
        "## Per-task database overhead (`bench/task_overhead.py`)",
        "",
        f"{machine_line()}; PostgreSQL on loopback TCP with SCRAM authentication; "
        f"{n_slow} tasks for (a) and (b), {n_fast} for the others. Times in ms.",
        "",
        "| pattern | p50 | p99 | mean | (a) p50 / this p50 | this p50 / floor p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = ("a", "b", "c", "c_read", "c_tx", "c_check", "c_bare", "c_reset")
    for key in (*rows, "d", "e", "f", "d0", "floor"):
        row = s[key]
        lines.append(
            f"| {LABELS[key]} | {row['p50']:.3f} | {row['p99']:.3f} | {row['mean']:.3f} | "
            f"{s['a']['p50'] / row['p50']:.1f}x | {row['p50'] / s['floor']['p50']:.1f}x |"
        )
    lines.append("")
    for key in ("c", "d", "e", "f"):
        p50, ratio = s[key]["p50"], s["a"]["p50"] / s[key]["p50"]
        lines.append(
            f"- {key}: p50 {p50:.3f} ms ({'met' if p50 <= 1.0 else 'NOT met'} for <= 1 ms), "
            f"{ratio:.1f}x below (a) ({'met' if ratio >= 20 else 'NOT met'} for >= 20x)"
        )
    read = s["c_read"]["p50"] / s["floor_alternating"]["p50"]
    lines.append(
        f"- a single read (c_read): {read:.1f}x the SELECT 1 floor measured in alternating "
        f"rounds with it ({s['c_read']['p50']:.3f} vs {s['floor_alternating']['p50']:.3f} ms; "
        f"{'met' if read <= 2.0 else 'NOT met'} for within 2x)"
    )
    check = s["c_check"]["p50"] / s["c_bare"]["p50"]
    lines += [
        "",
        f"Session check on return (reported settings and transaction characteristics compared "
        f"with those the connection was opened with): (c) p50 / bare-reset p50 = {check:.2f} "
        f"({'met' if check <= 1.10 else 'NOT met'} for within 10 %; {s['c_check']['p50']:.3f} "
        f"vs {s['c_bare']['p50']:.3f} ms, measured in 10 alternating rounds). RESET ALL on "
        "every return costs "
        f"{s['c_reset']['p50'] / s['c_check']['p50']:.1f}x (c).",
    ]
    lines += [
        "",
        f"Pool after the run: {pool_stats['connections_num']} connection(s) opened for "
        f"{pool_stats['requests_num']} checkouts, {pool_stats['requests_timeouts']} timeouts. "
        f"(d) cannot be far below its pattern floor: asyncio.run with asyncio.to_thread "
        f"costs {s['d0']['p50']:.3f} ms before any database work, because every asyncio.run "
        "creates a default executor and joins its thread at the end.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run, "task-overhead")
