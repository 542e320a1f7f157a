"""``to_thread`` on one process-wide thread pool.

``asyncio.to_thread`` runs on the event loop's default executor, and
``asyncio.run`` creates that executor and joins its threads on every run: in a
Celery task that calls ``asyncio.run`` each time, that alone costs about half a
millisecond (see docs/BENCHMARKS.md). This ``to_thread`` behaves the same
(context variables included) but reuses threads that live as long as the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0


def shared_executor() -> ThreadPoolExecutor:
    """This process's executor; a forked child gets a new one (threads do not survive fork)."""
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():
        with _lock:
            if _executor is None or _executor_pid != os.getpid():
                _executor = ThreadPoolExecutor(
                    max_workers=min(32, (os.cpu_count() or 1) + 4),
                    thread_name_prefix="aperag_pg",
                )
                _executor_pid = os.getpid()
    return _executor


async def to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Like ``asyncio.to_thread``, on the process-wide executor."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(shared_executor(), call)


def shutdown_executor() -> None:
    """Stop the executor's threads (at worker shutdown); a later call starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None and _executor_pid == os.getpid():
        executor.shutdown(wait=True)
