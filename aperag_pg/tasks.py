"""Celery tasks that ship with the package: diagnostics a deployment can run at any time."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from celery import shared_task

from .manager import PostgreSQLSyncConnectionManager
from .worker import database_time, run_async

_BACKEND_INFO = "SELECT pg_backend_pid(), current_setting('application_name'), pg_sleep(%s) IS NULL"


def _backend_info(hold_seconds: float) -> dict:
    started = time.perf_counter()
    with PostgreSQLSyncConnectionManager.get_connection() as conn, conn.cursor() as cur:
        cur.execute(_BACKEND_INFO, (hold_seconds,))
        backend_pid, application_name, _ = cur.fetchone()
    db_ms = (time.perf_counter() - started) * 1000 - hold_seconds * 1000
    return {
        "db_ms": db_ms,
        "pid": os.getpid(),
        "backend_pid": backend_pid,
        "application_name": application_name,
        "stats": PostgreSQLSyncConnectionManager.stats(),
    }


@shared_task(name="aperag_pg.pool_probe")
def pool_probe(hold_seconds: float = 0.0) -> dict:
    """Run one query on the worker's pool; report which process and server session served it."""
    return _backend_info(hold_seconds)


@shared_task(name="aperag_pg.async_pool_probe")
def async_pool_probe(hold_seconds: float = 0.0) -> dict:
    """The same through the worker's event loop and ``asyncio.to_thread``, as async callers do."""

    async def probe() -> dict:
        info = await asyncio.to_thread(_backend_info, hold_seconds)
        info["event_loop_id"] = id(asyncio.get_running_loop())
        return info

    return run_async(probe())


# -- LangGraph checkpoints -------------------------------------------------------------
# Imported inside the tasks: langgraph is an optional extra, and workers without it must
# still start.

_saver_lock = threading.Lock()
_saver: Any = None
_saver_pid = 0


def checkpoint_saver() -> Any:
    """This process's PGSyncCheckpointSaver, its tables set up on first use.

    The saver holds no connection (each call borrows one from this process's pool),
    so one instance serves every task and thread of the process.
    """
    global _saver, _saver_pid
    with _saver_lock:
        if _saver is None or _saver_pid != os.getpid():
            from .checkpoint import PGSyncCheckpointSaver

            saver = PGSyncCheckpointSaver()
            saver.setup()
            _saver, _saver_pid = saver, os.getpid()
        return _saver


def _thread_config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


@shared_task(name="aperag_pg.checkpoint_demo_start")
def checkpoint_demo_start(thread_id: str, topic: str) -> dict:
    """Run the review graph until its human-review interrupt; the state stays in PostgreSQL."""
    from .checkpoint.example_graph import build_review_graph

    graph = build_review_graph(checkpoint_saver())
    with database_time() as usage:
        result = graph.invoke({"topic": topic}, _thread_config(thread_id))
    return {
        "pid": os.getpid(),
        "thread": thread_id,
        "pool": PostgreSQLSyncConnectionManager.stats(),
        **usage,
        "interrupts": [item.value for item in result.get("__interrupt__", [])],
        "next": list(graph.get_state(_thread_config(thread_id)).next),
    }


@shared_task(name="aperag_pg.checkpoint_demo_resume")
def checkpoint_demo_resume(thread_id: str, answer: str, use_async: bool = True) -> dict:
    """Resume the review graph of ``thread_id`` with the reviewer's answer, in any process.

    ``use_async`` resumes with ``ainvoke`` on the worker's event loop, otherwise ``invoke``.
    """
    from langgraph.types import Command

    from .checkpoint.example_graph import build_review_graph

    graph = build_review_graph(checkpoint_saver())
    config = _thread_config(thread_id)
    with database_time() as usage:
        if use_async:
            state = run_async(graph.ainvoke(Command(resume=answer), config))
        else:
            state = graph.invoke(Command(resume=answer), config)
    return {
        "pid": os.getpid(),
        "thread": thread_id,
        "pool": PostgreSQLSyncConnectionManager.stats(),
        **usage,
        "state": {k: v for k, v in state.items() if k != "__interrupt__"},
        "next": list(graph.get_state(config).next),
        "checkpoints": len(list(graph.get_state_history(config))),
    }


@shared_task(name="aperag_pg.prune_checkpoints")
def prune_checkpoints(
    thread_ttl_days: float | None = None,
    history_ttl_days: float | None = None,
    max_threads: int = 1000,
) -> dict:
    """Checkpoint retention, for Celery beat: delete threads idle for ``thread_ttl_days`` and
    checkpoints older than ``history_ttl_days`` (each thread keeps its latest).

    Unset arguments come from CHECKPOINT_THREAD_TTL_DAYS and CHECKPOINT_HISTORY_TTL_DAYS;
    with neither set, nothing is deleted.
    """
    from .checkpoint import retention
    from .environment import CHECKPOINT_HISTORY_TTL_DAYS, CHECKPOINT_THREAD_TTL_DAYS
    from .settings import load_environment

    env = load_environment()
    report = retention.apply_retention(
        thread_ttl=retention.ttl(thread_ttl_days, env, CHECKPOINT_THREAD_TTL_DAYS),
        history_ttl=retention.ttl(history_ttl_days, env, CHECKPOINT_HISTORY_TTL_DAYS),
        max_threads=max_threads,
    )
    return {"pid": os.getpid(), **report.as_dict()}
