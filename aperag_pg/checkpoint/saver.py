"""PGSyncCheckpointSaver: a LangGraph checkpointer on the worker process's psycopg2 pool.

Sync methods take a connection from ``PostgreSQLSyncConnectionManager`` for one
call; async methods run the sync ones on ``aperag_pg.threads.to_thread``. Nothing
is bound to an event loop or held between calls, and there is no instance lock:
concurrent calls use different connections, so one saver serves ``invoke`` and
``ainvoke`` from any thread or loop, and survives ``copy.copy`` and ``fork``.

The tables and formats are those of langgraph-checkpoint-postgres 3.2.0: a
thread written by ``PostgresSaver`` is read and continued here, and the other
way round.
"""

from __future__ import annotations

import builtins  # list[...] inside the class: its method list() shadows the builtin
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

import psycopg2
import psycopg2.errors
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ..batching import as_columns, chunked, in_lock_order
from ..cursors import Mode
from ..errors import InvalidInput, first_line
from ..manager import PostgreSQLSyncConnectionManager
from ..settings import is_plain_schema_name
from ..threads import to_thread
from . import codec, prune, reads, sql
from .connection import checkpoint_cursor
from .functions import CALL_GET, CALL_PUT, CALL_PUT_WRITES
from .migrate import setup_checkpoint_tables

logger = logging.getLogger(__name__)

PRUNE_STRATEGIES = ("keep_latest", "delete")


class PGSyncCheckpointSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer on aperag_pg's per-process psycopg2 pool.

    Args:
        schema: schema of the checkpoint tables; default ``POSTGRES_SCHEMA`` of the pool.
        serde: serializer for channel values and writes (LangGraph's default if None).
        manager: the connection manager (the process-wide one by default).
    """

    # Checkpoints per list() round trip, ancestors per round trip of a DeltaChannel
    # history walk, and rows per statement for large writes.
    list_page_size = 500
    delta_page_size = 128
    write_chunk_size = 500

    def __init__(
        self,
        *,
        schema: str | None = None,
        serde: SerializerProtocol | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        super().__init__(serde=serde)
        if schema is not None and not is_plain_schema_name(schema):
            raise ValueError(
                f"schema {schema!r} is not a plain schema name: use 1 to 63 letters, digits "
                "or underscores, not starting with a digit (as POSTGRES_SCHEMA)."
            )
        self.schema = schema
        self.manager = manager

    # -- setup ---------------------------------------------------------------------

    def setup(self) -> list[int]:
        """Create or upgrade the tables; idempotent and safe from many processes at once."""
        return setup_checkpoint_tables(self._schema(), self.manager)

    async def asetup(self) -> list[int]:
        return await to_thread(self.setup)

    # -- reads ---------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest; None if there is none."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = configurable.get("checkpoint_ns") or ""
        checkpoint_id = get_checkpoint_id(config)
        if codec.never_stored(thread_id, checkpoint_ns, checkpoint_id):
            return None  # no stored key holds such text
        with self._cursor(Mode.AUTOCOMMIT) as (cur, q):
            cur.execute(q(CALL_GET), (thread_id, checkpoint_ns, checkpoint_id or None))
            rows = cur.fetchall()
        tuples = reads.assemble(self.serde, rows)
        return tuples[0] if tuples else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, fetched ``list_page_size`` at a time."""
        cursor = reads.list_cursor(config, filter, before, limit)
        while page := self._list_page(cursor):
            yield from page

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The writes and seed of each channel along the checkpoint's ancestors.

        The same walk and result as ``BaseCheckpointSaver``'s, but the ancestors are read
        ``delta_page_size`` at a time (a DeltaChannel snapshots every 100 steps by
        default) instead of one ``get_tuple`` round trip each.
        """
        return reads.delta_channel_history(
            self.get_tuple,
            lambda cursor: self._list_page(cursor, self.delta_page_size),
            config,
            channels,
        )

    # -- writes --------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and its new blobs in one statement (one transaction)."""
        configurable = config["configurable"]
        thread_id = codec.text_key(configurable["thread_id"], "thread_id")
        checkpoint_ns = codec.text_key((configurable.get("checkpoint_ns") or ""), "checkpoint_ns")
        parent_id = configurable.get("checkpoint_id")
        if parent_id is not None:
            parent_id = codec.text_key(parent_id, "parent checkpoint_id")
        checkpoint_id = codec.text_key(checkpoint["id"], "checkpoint id")
        stored, blob_values = codec.split_checkpoint(checkpoint)
        checkpoint_json = codec.dump_checkpoint_json(stored)
        metadata_json = codec.dump_metadata_json(config, metadata)
        blobs = codec.dump_blobs(self.serde, blob_values, new_versions)
        row = (thread_id, checkpoint_ns, checkpoint_id, parent_id, checkpoint_json, metadata_json)
        try:
            if len(blobs) <= self.write_chunk_size:
                with self._cursor(Mode.AUTOCOMMIT) as (cur, q):
                    cur.execute(q(CALL_PUT), (*row, *as_columns(blobs, 4)))
            else:
                with self._cursor() as (cur, q):
                    for chunk in chunked(blobs, self.write_chunk_size):
                        cur.execute(
                            q(sql.PUT_BLOBS), (thread_id, checkpoint_ns, *as_columns(chunk, 4))
                        )
                    cur.execute(q(sql.PUT_CHECKPOINT), row)
        except psycopg2.DataError as exc:
            raise _rejected(f"checkpoint {checkpoint_id!r}", exc) from exc
        return {
            "configurable": {
                "thread_id": configurable["thread_id"],
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for a checkpoint (special channels replace, others keep)."""
        configurable = config["configurable"]
        if not configurable.get("checkpoint_id"):
            raise InvalidInput(
                "put_writes needs config['configurable']['checkpoint_id'], the checkpoint "
                "the writes belong to; pass the config that put() returned."
            )
        key = (
            codec.text_key(configurable["thread_id"], "thread_id"),
            codec.text_key((configurable.get("checkpoint_ns") or ""), "checkpoint_ns"),
            codec.text_key(configurable["checkpoint_id"], "checkpoint_id"),
            codec.text_key(task_id, "task_id"),
            codec.text_key(task_path, "task_path"),
        )
        rows = codec.dump_writes(self.serde, writes)
        if not rows:
            return
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        if replace:
            # One statement must not update a row twice: the last write of a key wins.
            rows = list({row[0]: row for row in rows}.values())
        rows = in_lock_order(rows, key=itemgetter(0))  # by idx, whatever the caller's order
        try:
            if len(rows) <= self.write_chunk_size:
                with self._cursor(Mode.AUTOCOMMIT) as (cur, q):
                    cur.execute(q(CALL_PUT_WRITES), (*key, *as_columns(rows, 4), replace))
            else:
                with self._cursor() as (cur, q):
                    for chunk in chunked(rows, self.write_chunk_size):
                        cur.execute(q(CALL_PUT_WRITES), (*key, *as_columns(chunk, 4), replace))
        except psycopg2.DataError as exc:
            raise _rejected(f"writes of task {task_id!r}", exc) from exc

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of the thread (all namespaces)."""
        thread_id = str(thread_id)
        if codec.never_stored(thread_id):
            return
        with self._cursor(Mode.AUTOCOMMIT) as (cur, q):
            cur.execute(q(sql.DELETE_THREAD), (thread_id,) * 3)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is given.

        Remaining checkpoints whose parent was deleted lose the parent link, and blobs
        no remaining checkpoint references are deleted. All in one transaction.
        """
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        ids = sorted({str(r) for r in run_ids if not codec.never_stored(str(r))})
        if not ids:
            return
        with self._cursor() as (cur, q):
            prune.delete_runs(cur, q, ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of a thread to a new thread, server-side.

        The copy keeps checkpoint IDs, metadata and parent links (the whole history, so
        DeltaChannel state can be rebuilt). The target must have no checkpoints yet.
        """
        source = codec.text_key(source_thread_id, "source thread_id")
        target = codec.text_key(target_thread_id, "target thread_id")
        if source == target:
            return
        with self._cursor() as (cur, q):
            cur.execute(q(sql.THREAD_EXISTS), (target,))
            if cur.fetchone()[0]:
                raise InvalidInput(
                    f"copy_thread: target thread {target!r} already has checkpoints; copy to "
                    "a new thread ID, or delete_thread() the target first."
                )
            cur.execute(q(sql.COPY_THREAD), (target, source) * 3)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps each namespace's latest checkpoint, with its
        pending writes and the blobs it references; ``"delete"`` removes the threads.

        As PostgresSaver's: "delete" runs in one transaction; "keep_latest" refuses
        threads that use a DeltaChannel (then nothing is pruned) and prunes each thread
        in its own REPEATABLE READ transaction, so a run appending meanwhile is safe.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(
                f"Unknown prune strategy: {strategy!r}; use one of {', '.join(PRUNE_STRATEGIES)}"
            )
        ids = list(dict.fromkeys(str(t) for t in thread_ids if not codec.never_stored(str(t))))
        if not ids:
            return
        if strategy == "delete":
            with self._cursor() as (cur, q):
                for chunk in chunked(ids, prune.CHUNK_SIZE):
                    cur.execute(q(sql.DELETE_THREADS), (chunk,) * 3)
            return
        with self._cursor() as (cur, q):
            prune.refuse_delta_threads(cur, q, ids)
        for thread_id in ids:
            with self._cursor(Mode.SNAPSHOT) as (cur, q):
                # Catches a thread that started using a DeltaChannel after the check above.
                prune.refuse_delta_threads(cur, q, [thread_id])
                prune.keep_latest(cur, q, thread_id)

    # -- versions ------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        return codec.next_version(current)

    # -- async: the sync methods on the process-wide executor ----------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        cursor = reads.list_cursor(config, filter, before, limit)
        while page := await to_thread(self._list_page, cursor):
            for item in page:
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await to_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        # The whole ancestor walk in one worker thread instead of a hop per checkpoint.
        return await to_thread(self.get_delta_channel_history, config=config, channels=channels)

    # -- connections ---------------------------------------------------------------

    def _schema(self) -> str:
        return self.schema or self.manager.settings().schema

    def _cursor(self, mode: Mode = Mode.TRANSACTION) -> Any:
        """The saver's cursors (``checkpoint_cursor``). A call of ONE statement runs in
        ``Mode.AUTOCOMMIT``: PostgreSQL runs it as its own transaction, and skipping
        BEGIN and COMMIT saves a third of the cost of a small call."""
        return checkpoint_cursor(self.manager, self._schema(), mode)

    def _list_page(
        self, cursor: reads.ListCursor, size: int | None = None
    ) -> builtins.list[CheckpointTuple]:
        """The next page of a list(), one statement; empty when the listing is done."""
        if cursor.done:
            return []
        template, parts, params, size = reads.page_query(cursor, size or self.list_page_size)
        with self._cursor(Mode.AUTOCOMMIT) as (cur, q):
            cur.execute(q(template, **parts), params)
            rows = cur.fetchall()
        page = reads.assemble(self.serde, rows)
        reads.advance(cursor, page, size)
        return page


def _rejected(what: str, exc: psycopg2.Error) -> InvalidInput:
    return InvalidInput(
        f"PostgreSQL rejected {what}: {first_line(exc)}. Nothing was written (one transaction). "
        "Check the checkpoint and metadata for values JSON or jsonb cannot hold."
    )
