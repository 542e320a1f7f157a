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

_lock = threading.Lock()
_made: dict[str, tuple[int, Any]] = {}  # name -> (pid, object): one per worker process


def _per_process(name: str, make: Any) -> Any:
    """This process's ``make()``, made (and set up) on first use; a forked child makes its
    own. Savers and stores hold no connection (each call borrows one from this process's
    pool), so one instance serves every task and thread of the process."""
    with _lock:
        pid, made = _made.get(name, (0, None))
        if pid != os.getpid():
            made = make()
            made.setup()
            _made[name] = (os.getpid(), made)
        return made


def checkpoint_saver() -> Any:
    from aperag_pg.checkpoint import PGSyncCheckpointSaver

    return _per_process("saver", PGSyncCheckpointSaver)


def memory_store() -> Any:
    """The workflows' long-term memory (no index: the demo recalls by namespace)."""
    from aperag_pg.memory import PGSyncStore

    return _per_process("store", PGSyncStore)


def _thread_config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


@shared_task(name="aperag_pg.checkpoint_demo_start")
def checkpoint_demo_start(thread_id: str, topic: str, author: str | None = None) -> dict:
    """Run the review graph until its human-review interrupt; the state stays in PostgreSQL.
    With an ``author``, publishing uses (and adds to) the author's long-term memory."""
    from .example_graph import build_review_graph

    graph = build_review_graph(checkpoint_saver(), memory_store())
    start = {"topic": topic, **({"author": author} if author else {})}
    with database_time() as usage:
        result = graph.invoke(start, _thread_config(thread_id))
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

    graph = build_review_graph(checkpoint_saver(), memory_store())
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
