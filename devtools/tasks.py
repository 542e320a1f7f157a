"""The demo's Celery tasks: a LangGraph review workflow started in one task and resumed in
another, possibly in another worker process, its state in PostgreSQL. Task names keep the
``aperag_pg.`` prefix the demo, tests and benchmarks send."""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import shared_task

from aperag_pg import PostgreSQLSyncConnectionManager, run_async
from aperag_pg.worker import database_time

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
            from aperag_pg.checkpoint import PGSyncCheckpointSaver

            saver = PGSyncCheckpointSaver()
            saver.setup()
            _saver, _saver_pid = saver, os.getpid()
        return _saver


def _thread_config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


@shared_task(name="aperag_pg.checkpoint_demo_start")
def checkpoint_demo_start(thread_id: str, topic: str) -> dict:
    """Run the review graph until its human-review interrupt; the state stays in PostgreSQL."""
    from .example_graph import build_review_graph

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

    from .example_graph import build_review_graph

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
