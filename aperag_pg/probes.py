"""Diagnostic Celery tasks a deployment can run at any time: which worker process and
server session serve a query, through the pool and through the worker's event loop."""

from __future__ import annotations

import asyncio
import os
import time

from celery import shared_task

from .cursors import Mode, cursor
from .manager import PostgreSQLSyncConnectionManager
from .worker import run_async

_BACKEND_INFO = "SELECT pg_backend_pid(), current_setting('application_name'), pg_sleep(%s) IS NULL"


def _backend_info(hold_seconds: float) -> dict:
    started = time.perf_counter()
    with cursor(mode=Mode.AUTOCOMMIT) as cur:
        cur.execute(_BACKEND_INFO, (hold_seconds,))
        row = cur.fetchone()
        assert row is not None  # a SELECT without FROM returns its one row
        backend_pid, application_name, _ = row
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
