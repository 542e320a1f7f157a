"""threads.to_thread: what asyncio.to_thread promises, on the process-wide executor."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from aperag_pg.threads import shared_executor, to_thread

REQUEST = contextvars.ContextVar("request", default="none")


def test_returns_the_result_from_another_thread():
    async def main():
        return await to_thread(lambda a, b=0: (a + b, threading.get_ident()), 2, b=3)

    total, ident = asyncio.run(main())
    assert total == 5 and ident != threading.get_ident()


def test_raises_the_calls_exception_in_the_awaiting_task():
    def fail():
        raise KeyError("missing")

    async def main():
        await to_thread(fail)

    with pytest.raises(KeyError, match="missing"):
        asyncio.run(main())


def test_a_stop_iteration_arrives_as_a_runtime_error():
    async def main():
        await to_thread(next, iter(()))

    with pytest.raises(RuntimeError, match="StopIteration") as raised:
        asyncio.run(main())
    assert isinstance(raised.value.__cause__, StopIteration)


def test_carries_the_callers_context_variables():
    async def main():
        REQUEST.set("task-7")
        return await to_thread(REQUEST.get)

    assert asyncio.run(main()) == "task-7"


def test_each_new_loop_gets_its_results():
    """A Celery task may run asyncio.run each time: the threads outlive every loop."""
    for n in range(3):
        assert asyncio.run(to_thread(lambda n=n: n * 10)) == n * 10


def test_a_cancelled_call_that_no_thread_started_never_runs():
    threads = shared_executor()._max_workers
    release = threading.Event()
    started = threading.Semaphore(0)
    ran = []

    def block():
        started.release()
        release.wait(timeout=30)

    async def main():
        blockers = [asyncio.ensure_future(to_thread(block)) for _ in range(threads)]
        # submitted after every blocker, so it waits in the queue behind them
        queued = asyncio.ensure_future(to_thread(ran.append, "ran"))
        for _ in range(threads):  # every thread busy with a blocker
            await asyncio.get_running_loop().run_in_executor(None, started.acquire)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued  # its future's callbacks, the executor's cancel first, have run
        release.set()
        await asyncio.gather(*blockers)
        # one more call through the same threads: the cancelled one would have run first
        await to_thread(lambda: None)

    asyncio.run(main())
    assert ran == []
