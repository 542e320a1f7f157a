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
    """Like ``asyncio.to_thread``, on the process-wide executor.

    The thread hands its result straight to the loop (``call_soon_threadsafe``) instead of
    through ``run_in_executor``'s chained concurrent future: about half the hop's cost
    (docs/BENCHMARKS.md), paid on every storage call of a LightRAG query. Cancelling the
    awaiting task cancels the call if no thread has started it yet, as there.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    work = shared_executor().submit(_run_and_post, loop, future, call)
    future.add_done_callback(lambda done: work.cancel() if done.cancelled() else None)
    return await future


def _run_and_post(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future, call: functools.partial
) -> None:
    """In the thread: run ``call``, then settle ``future`` on its loop."""
    try:
        result, error = call(), None
    except BaseException as exc:  # re-raised in the awaiting task, as run_in_executor does
        result, error = None, exc
        if isinstance(exc, StopIteration):  # a future cannot hold one
            error = RuntimeError(f"{call.args[0]!r} raised StopIteration")
            error.__cause__ = exc
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop was closed meanwhile: nobody awaits the result
        pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def shutdown_executor() -> None:
    """Stop the executor's threads (at worker shutdown); a later call starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None and _executor_pid == os.getpid():
        executor.shutdown(wait=True)
