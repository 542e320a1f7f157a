"""Concurrent single-key reads of one storage, coalesced into batched reads.

LightRAG's pipeline merges a document's entities and relations concurrently, and each
merge reads its node, its edge and its chunk list one key at a time: over half of those
reads start while another read of the same kind is still in flight (a 60-document ingest:
1,288 ``get_node`` calls, 739 of them with one already running). Each would be a thread
hop, a pool checkout and a round trip of its own.

A ``Coalescer`` sends the first read at once, in a batch of one, and queues the keys that
arrive while a batch is in flight; when it returns, the queue goes as the next batch, in
one call of the store's batched read (``get_by_ids``, ``get_nodes_batch``, ...). So no read
waits for company, and under load the round trips shrink to one per batch. A read still
sees every write that returned before it was asked, as each batch starts after the reads
in it were asked.

Each caller gets its own copy of a value that several callers asked for at once (LightRAG
edits what it reads). A batch that fails with ``InvalidInput`` (a bad key, found before
anything is sent) is retried key by key, so only the caller of the bad key gets the
error; any other error reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
import copy
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..threads import to_thread

MAX_BATCH = 500  # keys per batched call; the stores chunk larger ones anyway


@dataclass
class _Queue:
    """One event loop's pending reads: key -> the futures of its callers."""

    waiting: dict[Hashable, list[asyncio.Future]] = field(default_factory=dict)
    draining: bool = False


class Coalescer:
    """Reads of single keys, batched while a batch is in flight; ``read_many(keys)`` is the
    store's sync batched read, returning ``{key: value}`` for the keys found."""

    def __init__(self, read_many: Callable[[list[Any]], Mapping[Any, Any]]) -> None:
        self._read_many = read_many
        # per event loop: a facade outlives the loops of successive asyncio.run calls
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def read(self, key: Hashable) -> Any:
        """The value of ``key``, or None if it does not exist."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future = loop.create_future()
        queue.waiting.setdefault(key, []).append(future)
        if not queue.draining:
            queue.draining = True
            loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _Queue) -> None:
        try:
            while queue.waiting:
                keys = list(queue.waiting)[:MAX_BATCH]
                batch = {key: queue.waiting.pop(key) for key in keys}
                await self._answer(batch)
        finally:
            queue.draining = False
            for futures in queue.waiting.values():  # the loop is going away
                for future in futures:
                    future.cancel()
            queue.waiting.clear()

    async def _answer(self, batch: dict[Hashable, list[asyncio.Future]]) -> None:
        try:
            found = await to_thread(self._read_many, list(batch))
        except InvalidInput as exc:
            if len(batch) == 1:
                _settle(batch, error=exc)
                return
            for key, futures in batch.items():  # find the caller(s) of the bad key
                await self._answer({key: futures})
        except Exception as exc:
            _settle(batch, error=exc)
        except BaseException:  # cancelled (the loop is closing), or the process exits
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        else:
            _settle(batch, found=found)


def _settle(
    batch: dict[Hashable, list[asyncio.Future]],
    found: Mapping[Any, Any] | None = None,
    error: BaseException | None = None,
) -> None:
    for key, futures in batch.items():
        value = None if found is None else found.get(key)
        for n, future in enumerate(futures):
            if future.done():  # its caller was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:  # the first caller gets the value, any other a copy of its own
                future.set_result(value if n == 0 else copy.deepcopy(value))
