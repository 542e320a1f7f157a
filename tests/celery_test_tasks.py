"""Tasks that only the tests load into a worker (``--include tests.celery_test_tasks``)."""

from __future__ import annotations

import os
import signal

from celery import shared_task

from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager

ATTEMPTS_TABLE = "celery_task_attempts"
# Created by the test before its worker starts: two first tasks creating it at once collide.
ATTEMPTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {ATTEMPTS_TABLE} (task_id text, at timestamptz default now())"
)


def _record_attempt(task_id: str) -> None:
    Manager.execute_query(f"INSERT INTO {ATTEMPTS_TABLE} (task_id) VALUES (%s)", (task_id,))


@shared_task(bind=True, name="tests.loses_connection")
def loses_connection(self, failures: int) -> int:
    """Its server session is killed on the first ``failures`` attempts: a real transient error."""
    _record_attempt(self.request.id)
    with Manager.get_connection() as conn, conn.cursor() as cur:
        if self.request.retries < failures:
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        cur.execute("SELECT 1")
    return self.request.retries


@shared_task(bind=True, name="tests.bad_sql")
def bad_sql(self) -> None:
    """A programming error: must fail at once, never be retried."""
    _record_attempt(self.request.id)
    Manager.execute_query("SELECT * FROM table_that_does_not_exist")


@shared_task(bind=True, name="tests.dies")
def dies(self, deaths: int, label: str) -> dict:
    """Its worker process is killed (SIGKILL) on its first ``deaths`` deliveries."""
    _record_attempt(self.request.id)
    if self.request.retries < deaths:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid(), "retries": self.request.retries, "label": label}


@shared_task(bind=True, name="tests.memory_round_trip")
def memory_round_trip(self, namespace: list[str], key: str, value: dict) -> dict:
    """Write, read and search LangGraph memory in a new event loop (``asyncio.run``), as a
    task using an async library would, on the process's one store."""
    import asyncio

    from devtools.tasks import memory_store

    store = memory_store()

    async def work() -> dict:
        await store.aput(tuple(namespace), key, value)
        item = await store.aget(tuple(namespace), key)
        found = await store.asearch(tuple(namespace[:1]), filter={"n": value["n"]})
        return {"read": item.value, "found": [(list(i.namespace), i.key) for i in found]}

    return {"pid": os.getpid(), "store": id(store), **asyncio.run(work())}


@shared_task(bind=True, name="tests.fenced_writer", retry_kwargs={"max_retries": 0})
def fenced_writer(self, workspace: str, seconds: float) -> int:
    """Write KV rows one by one under the workspace's writer lease (as a LightRAG ingest
    does) for ``seconds``; returns how many it wrote. No retry: a lost lease fails it."""
    import time

    from aperag_pg.lightrag.writer import one_writer
    from aperag_pg.stores.kv import KVStore

    kv = KVStore("full_docs", workspace)
    kv.ensure_tables()
    written = 0
    deadline = time.monotonic() + seconds
    with one_writer(workspace):
        while time.monotonic() < deadline:
            kv.upsert({f"row-{written}": {"content": str(os.getpid()), "file_path": "w.txt"}})
            written += 1
    return written


@shared_task(bind=True, name="tests.recorded_sleep")
def recorded_sleep(self, seconds: float) -> str:
    """Records each run of itself, then takes ``seconds``: work that is running or queued
    when something breaks, and shows how often it ran."""
    import time

    _record_attempt(self.request.id)
    time.sleep(seconds)
    return self.request.id
