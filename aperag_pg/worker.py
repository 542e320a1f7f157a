"""Celery glue: open the pool when a worker process starts, close it when it stops.

Prefork children get ``worker_process_init`` / ``worker_process_shutdown``.
``--pool=solo`` and ``--pool=threads`` run tasks in the main process, where
those signals never fire: there the pool opens lazily on first use and
``worker_shutdown`` closes it. ``install_worker_signals()`` wires all of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import reprlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
from billiard.einfo import ExceptionInfo
from celery import Task, bootsteps
from celery.exceptions import WorkerLostError
from celery.worker.request import Request

from .errors import PoolTimeout, TaskKeepsCrashing, TransientFailure, first_line
from .manager import PostgreSQLSyncConnectionManager
from .schema import ensure_schema
from .threads import shutdown_executor

logger = logging.getLogger(__name__)

T = TypeVar("T")


def setup_worker_postgres(**_signal_kwargs: Any) -> None:
    """``worker_process_init`` handler: open this process's pool and bring the schema up to date."""
    PostgreSQLSyncConnectionManager.initialize()
    ensure_schema()
    logger.info("aperag_pg ready in worker process %s", os.getpid())


def cleanup_worker_postgres(**_signal_kwargs: Any) -> None:
    """``worker_process_shutdown`` / ``worker_shutdown`` handler: close the loop and the pool."""
    _loop.close()
    shutdown_executor()
    stats = PostgreSQLSyncConnectionManager.stats()
    PostgreSQLSyncConnectionManager.close()
    logger.info("aperag_pg closed in worker process %s (stats: %s)", os.getpid(), stats)


def setup_main_process(sender: Any = None, **_signal_kwargs: Any) -> None:
    """``worker_init`` handler: bring the schema up to date in pools without child processes.

    Prefork children do it themselves in ``setup_worker_postgres``; opening a
    pool in the prefork parent would only hand copies of it to every child.
    """
    if _is_prefork(sender):
        return
    ensure_schema()


def startup_check(check: Callable[[], None]) -> type[bootsteps.Step]:
    """A worker bootstep that runs ``check`` once in the worker's main process when the
    worker is built: after Celery has set up its logging (so what ``check`` logs reaches
    the worker's log file, also when detached) and before the pool starts any child. A
    ``SystemExit`` from it stops the worker. Add it with ``app.steps["worker"].add(...)``.
    """

    class StartupCheck(bootsteps.Step):
        name = f"aperag_pg.startup_check.{check.__module__}.{check.__qualname__}"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            check()

    return StartupCheck


def install_worker_signals() -> None:
    """Connect every handler to Celery's signals; safe to call more than once."""
    from celery import signals

    signals.worker_process_init.connect(setup_worker_postgres, weak=False)
    signals.worker_process_shutdown.connect(cleanup_worker_postgres, weak=False)
    signals.worker_init.connect(setup_main_process, weak=False)
    signals.worker_shutdown.connect(cleanup_worker_postgres, weak=False)


class DatabaseTask(Task):
    """A Celery task that retries, with exponential backoff and jitter, when the database
    is briefly unreachable or busy: ``OperationalError`` (a lost connection, a restart, a
    deadlock or serialization failure), ``PoolTimeout``, and ``TransientFailure`` (work a
    library caught such an error in and recorded as failed). Statement timeouts and
    programming errors (bad SQL, bad input) are not retried: running them again cannot
    help. Use it as the app's ``task_cls``.
    """

    autoretry_for = (psycopg2.OperationalError, PoolTimeout, TransientFailure)
    dont_autoretry_for = (psycopg2.errors.QueryCanceled,)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    retry_kwargs = {"max_retries": 5}
    # A worker process that dies under a task (SIGKILL, out of memory) hands it back: with
    # task_retry_on_worker_lost it is sent again after this many seconds, at most
    # max_retries times, then fails with TaskKeepsCrashing (see CrashLimitedRequest).
    max_retries = 5
    default_retry_delay = 1
    Request = "aperag_pg.worker:CrashLimitedRequest"

    def describe_work(self, args: tuple, kwargs: dict) -> str:
        """What this call was to do, for an error that ends it; tasks say it better."""
        return f"arguments {reprlib.repr(args)}, {reprlib.repr(kwargs)}"


class CrashLimitedRequest(Request):
    """Celery's request, except that a task whose worker process died on its last allowed
    delivery fails with ``TaskKeepsCrashing`` naming its work, not a bare WorkerLostError.
    It runs in the worker's main process, which outlives the dead child."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        exc = exc_info.exception
        exc = getattr(exc, "exc", exc)  # billiard wraps it in ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self._no_delivery_left():
            task = self.task
            deliveries = self._context.retries + 1
            describe = getattr(task, "describe_work", None)
            work = describe(self.args, self.kwargs) if describe else reprlib.repr(self.args)
            exc_info = _exception_info(
                TaskKeepsCrashing(
                    f"{task.name}: its worker process died on each of its {deliveries} "
                    f"deliveries ({first_line(exc)}), so it is not delivered again. It was "
                    f"to process {work}. Find out why the process dies (memory? an input "
                    "that crashes a parser?), then send the task again."
                )
            )
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _no_delivery_left(self) -> bool:
        max_retries = self.task.max_retries
        return bool(self.task.retry_on_worker_lost) and (
            max_retries is not None and self._context.retries >= max_retries
        )


def _exception_info(exc: BaseException) -> ExceptionInfo:
    try:
        raise exc
    except BaseException:
        return ExceptionInfo()


def _is_prefork(worker: Any) -> bool:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    pool_cls = getattr(worker, "pool_cls", None)
    if isinstance(pool_cls, str):
        pool_cls = get_implementation(pool_cls)
    return isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool)


class _ProcessLoop:
    """One asyncio event loop per process, run by a daemon thread.

    Tasks from any thread (solo, threads or prefork pools) submit coroutines to
    it, so async libraries keep their loop-bound state across tasks instead of
    meeting a new loop every time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._running_loop()
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            coro.close()
            raise RuntimeError(
                "run_async() was called from inside the worker's own event loop, which would "
                "deadlock: await the coroutine instead."
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def loop(self) -> asyncio.AbstractEventLoop:
        return self._running_loop()

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or self._pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # inherited through fork: that thread is not here
                self._pid, self._loop, self._thread = os.getpid(), None, None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="aperag_pg-event-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


_loop = _ProcessLoop()


@contextmanager
def database_time() -> Iterator[dict[str, int]]:
    """Measure a block's use of this process's pool: yields a dict that, on exit, holds
    ``db_ms`` (time connections were held) and ``checkouts``. Meant for task reports; in a
    prefork child only one task runs at a time, so the figures are the task's own.
    """
    before = PostgreSQLSyncConnectionManager.stats()
    report: dict[str, int] = {}
    try:
        yield report
    finally:
        after = PostgreSQLSyncConnectionManager.stats()
        report["db_ms"] = after.get("usage_ms", 0) - before.get("usage_ms", 0)
        report["checkouts"] = after.get("requests_num", 0) - before.get("requests_num", 0)


def run_async(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on this worker process's event loop and return its result.

    The loop lives as long as the process (closed by ``cleanup_worker_postgres``),
    so a task may call this as often as it likes without creating a loop per task.
    """
    return _loop.run(coro, timeout)
