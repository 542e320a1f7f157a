"""LightRAG's server as one more writer of a workspace: its writes hold the writer lease.

The server's document routes (upload, scan, re-process, delete, clear) and graph edits
call its LightRAG instance's write operations, and its pipeline, like a worker's,
processes every pending document of the workspace. Without the workers' lease, an upload
and a worker ingest would run two pipelines over the same documents. ``ServerWriter``
wraps those operations on the server's instance: each waits for the workspace's writer
lease (``writer.one_writer``: across processes and hosts, with the store writes fenced
by it), one at a time within the server, and an operation called from inside another
runs within its holder's lease.

The WebUI learns of LightRAG's pipeline only through the server's in-process status.
``ServerWriter.watch`` shows a worker's hold there: while another process holds the
lease, the pipeline reads busy, with the holder named; when the lease is free again, a
pipeline run the server deferred meanwhile is started.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..stores.leases import Holder
from .lifecycle import WORKSPACE_STORAGES
from .writer import one_writer, writer_now

logger = logging.getLogger(__name__)

# LightRAG's write operations the server's routes call (lightrag-hku 1.5.7).
WRITE_OPERATIONS = (
    "apipeline_enqueue_documents",
    "apipeline_enqueue_error_documents",
    "apipeline_process_enqueue_documents",
    "apipeline_reset_failed_for_scan",
    "arollback_failed_custom_chunk_patches",
    "adelete_by_doc_id",
    "aclear_cache",
    "acreate_entity",
    "aedit_entity",
    "adelete_by_entity",
    "acreate_relation",
    "aedit_relation",
    "adelete_by_relation",
    "amerge_entities",
)
WATCH_INTERVAL_S = 2.0  # how soon the WebUI sees a worker's hold begin and end
WORKER_JOB = "Celery worker writing"

_holding = contextvars.ContextVar("aperag_pg_server_holds_writer", default=False)
# Tasks started and not awaited: the loop keeps only weak references to its tasks.
_background: set[asyncio.Future] = set()


def _in_background(awaitable: Any) -> None:
    task = asyncio.ensure_future(awaitable)
    _background.add(task)
    task.add_done_callback(_background.discard)


class ServerWriter:
    """The writer-lease discipline of one LightRAG instance of the server."""

    def __init__(self, rag: Any) -> None:
        self.rag = rag
        self.workspace = rag.workspace
        self._turn: asyncio.Lock | None = None  # made on the server's loop
        self._showing_worker = False
        self._held = False  # by this server, now

    def install(self) -> None:
        """Wrap the instance's write operations, and its storages' drop()."""
        for name in WRITE_OPERATIONS:
            setattr(self.rag, name, self._guarded(getattr(self.rag, name)))
        for name in WORKSPACE_STORAGES:  # the "clear documents" route drops them directly
            storage = getattr(self.rag, name, None)
            if storage is not None:
                storage.drop = self._guarded(storage.drop)

    def _guarded(self, operation: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            async with self.holding():
                return await operation(*args, **kwargs)

        guarded.__wrapped__ = operation  # type: ignore[attr-defined]
        return guarded

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Hold the workspace's writer lease for the block (at once if this task, or the
        one that started it, already does)."""
        if _holding.get():
            yield
            return
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            lease = one_writer(self.workspace)
            await self._say_waiting()
            await _enter_in_thread(lease)
            self._held = True
            await self._stop_showing_worker()
            token = _holding.set(True)
            try:
                yield
            except BaseException as exc:
                _holding.reset(token)
                self._held = False
                if not await asyncio.to_thread(lease.__exit__, type(exc), exc, exc.__traceback__):
                    raise
            else:
                _holding.reset(token)
                self._held = False
                await asyncio.to_thread(lease.__exit__, None, None, None)

    async def watch(self) -> None:
        """Show another process's hold of the lease as the pipeline's busy state, until
        cancelled (the server's shutdown)."""
        while True:
            try:
                holder = await asyncio.to_thread(writer_now, self.workspace)
                if holder is not None and not _ours(holder):
                    await self._show_worker(holder)
                elif self._showing_worker and not (self._turn and self._turn.locked()):
                    if await self._stop_showing_worker():
                        # the server deferred a pipeline run to the "busy" worker: run it
                        _in_background(self.rag.apipeline_process_enqueue_documents())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: try again at the next beat
                logger.warning("writer watch of workspace %r: %s", self.workspace, exc)
            await asyncio.sleep(WATCH_INTERVAL_S)

    # -- the server's pipeline status, as the WebUI shows it ---------------------------

    async def _status(self) -> tuple[dict[str, Any], Any]:
        from lightrag.kg.shared_storage import get_namespace_data, get_namespace_lock

        status = await get_namespace_data("pipeline_status", workspace=self.workspace)
        return status, get_namespace_lock("pipeline_status", workspace=self.workspace)

    async def _say_waiting(self) -> None:
        holder = await asyncio.to_thread(writer_now, self.workspace)
        if holder is None or _ours(holder):
            return
        status, lock = await self._status()
        message = (
            f"Waiting for workspace {self.workspace!r}'s writer lease, held by "
            f"{_describe(holder)}: the server writes when that writer is done."
        )
        async with lock:
            status["latest_message"] = message
            status["history_messages"].append(message)

    async def _show_worker(self, holder: str) -> None:
        status, lock = await self._status()
        async with lock:
            if self._held or (status.get("busy") and not self._showing_worker):
                return  # the server writes now (or its own pipeline runs)
            message = (
                f"A Celery worker is writing workspace {self.workspace!r}: {_describe(holder)}."
            )
            if not self._showing_worker:
                status["history_messages"].append(message)
            status.update(busy=True, job_name=WORKER_JOB, latest_message=message)
            self._showing_worker = True

    async def _stop_showing_worker(self) -> bool:
        """Clear the busy state ``_show_worker`` set; whether a pipeline run was deferred
        meanwhile."""
        if not self._showing_worker:
            return False
        status, lock = await self._status()
        async with lock:
            self._showing_worker = False
            status.update(busy=False, job_name="-", latest_message="The worker is done.")
            status["history_messages"].append(status["latest_message"])
            return bool(status.get("request_pending"))


async def _enter_in_thread(lease: Any) -> None:
    """Enter the lease's context manager in a thread (the wait may be long); if the caller
    is cancelled meanwhile, the lease is given back as soon as it has been taken."""
    taking = asyncio.ensure_future(asyncio.to_thread(lease.__enter__))
    try:
        await asyncio.shield(taking)
    except asyncio.CancelledError:

        def give_back(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is None:
                _in_background(asyncio.to_thread(lease.__exit__, None, None, None))

        taking.add_done_callback(give_back)
        raise


def _ours(holder: str) -> bool:
    """Whether ``holder`` is this process (any of its holds)."""
    parsed, mine = Holder.parse(holder), Holder.of_this_process()
    return parsed is not None and (
        parsed.host,
        parsed.pid,
        parsed.boot_id,
        parsed.pid_namespace,
    ) == (mine.host, mine.pid, mine.boot_id, mine.pid_namespace)


def _describe(holder: str) -> str:
    parsed = Holder.parse(holder)
    if parsed is None:
        return holder
    return f"process {parsed.pid} on host {parsed.host}"
