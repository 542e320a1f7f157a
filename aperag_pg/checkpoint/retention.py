"""Retention for the checkpoint tables, which otherwise grow with every step of every run.

Two rules, each optional, run by the ``aperag_pg.prune_checkpoints`` Celery task
(schedule it with Celery beat):

- ``thread_ttl``: delete whole threads whose newest checkpoint is older than this;
- ``history_ttl``: in the threads that remain, delete checkpoints older than this,
  always keeping each namespace's latest one, so every thread can still be resumed.

Age is a checkpoint's own ``ts`` (written by LangGraph when it saves it); a
checkpoint whose ``ts`` is not a timestamp is never counted as old. Work is
bounded per run (``max_threads``) and split into short transactions, so a large
backlog drains over several runs without long locks. Threads that use a
DeltaChannel keep their history: their latest value is rebuilt from it (they
are still deleted whole by ``thread_ttl``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from ..batching import chunked
from ..cursors import Mode, cursor
from ..errors import ConfigError
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import table_exists
from . import prune, sql
from .connection import checkpoint_cursor

logger = logging.getLogger(__name__)

# Threads per delete statement; each batch is its own short transaction.
THREAD_BATCH = 100


@dataclass
class RetentionReport:
    threads_deleted: int = 0
    checkpoints_deleted_with_threads: int = 0
    threads_pruned: int = 0
    checkpoints_pruned: int = 0
    delta_threads_skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def apply_retention(
    *,
    thread_ttl: timedelta | None = None,
    history_ttl: timedelta | None = None,
    schema: str | None = None,
    max_threads: int = 1000,
    manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    now: datetime | None = None,
) -> RetentionReport:
    """Apply both rules (each when given) to at most ``max_threads`` threads each."""
    schema = schema or manager.settings().schema
    now = now or datetime.now(timezone.utc)
    report = RetentionReport()
    if not _tables_exist(manager, schema):
        logger.info("checkpoint retention: no checkpoint tables in schema %s yet", schema)
        return report
    if thread_ttl is not None:
        report.threads_deleted, report.checkpoints_deleted_with_threads = delete_stale_threads(
            now - _positive(thread_ttl, "thread_ttl"), schema, manager, max_threads
        )
    if history_ttl is not None:
        pruned, checkpoints, skipped = prune_old_history(
            now - _positive(history_ttl, "history_ttl"), schema, manager, max_threads
        )
        report.threads_pruned = pruned
        report.checkpoints_pruned = checkpoints
        report.delta_threads_skipped = skipped
    logger.info("checkpoint retention in schema %s: %s", schema, report.as_dict())
    return report


def delete_stale_threads(
    cutoff: datetime,
    schema: str,
    manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    max_threads: int = 1000,
) -> tuple[int, int]:
    """Delete threads whose every checkpoint is older than ``cutoff``: (threads, checkpoints).

    Each batch re-checks staleness on the snapshot of its delete, so a thread that
    got a new checkpoint since it was found is kept.
    """
    with checkpoint_cursor(manager, schema, Mode.AUTOCOMMIT) as (cur, q):
        cur.execute(q(sql.STALE_THREADS), (cutoff, max_threads))
        stale = [row[0] for row in cur.fetchall()]
    threads = checkpoints = 0
    for batch in chunked(stale, THREAD_BATCH):
        with checkpoint_cursor(manager, schema, Mode.AUTOCOMMIT) as (cur, q):
            cur.execute(q(sql.DELETE_STALE_THREADS), (batch, cutoff))
            deleted_threads, deleted_checkpoints = cur.fetchone()
        threads += deleted_threads
        checkpoints += deleted_checkpoints
    return threads, checkpoints


def prune_old_history(
    cutoff: datetime,
    schema: str,
    manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    max_threads: int = 1000,
) -> tuple[int, int, int]:
    """Delete checkpoints older than ``cutoff`` except each namespace's latest, with their
    writes and the blobs nothing else references: (threads, checkpoints, delta threads skipped).
    """
    with checkpoint_cursor(manager, schema) as (cur, q):
        cur.execute(q(sql.THREADS_WITH_OLD_HISTORY), (cutoff, max_threads))
        candidates = [row[0] for row in cur.fetchall()]
        delta = set(prune.delta_threads(cur, q, candidates))
    threads = checkpoints = 0
    for thread_id in candidates:
        if thread_id in delta:
            continue
        with checkpoint_cursor(manager, schema, Mode.SNAPSHOT) as (cur, q):
            if prune.delta_threads(cur, q, [thread_id]):  # started using one meanwhile
                delta.add(thread_id)
                continue
            deleted = prune.keep_latest(
                cur, q, thread_id, older_than=cutoff, drop_subgraph_calls=False
            )
        threads += bool(deleted)
        checkpoints += deleted
    return threads, checkpoints, len(delta)


def ttl(days: float | None, env: Mapping[str, str], variable: str) -> timedelta | None:
    """``days`` as a duration, else the number of days in ``env[variable]``, else None."""
    if days is not None:
        return _positive(timedelta(days=float(days)), variable.lower())
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a number of days (e.g. 30 or 0.5)") from None
    if not value > 0:
        raise ConfigError(f"{variable}={raw!r} must be more than 0 days; unset it to keep all")
    return timedelta(days=value)


def _tables_exist(manager: type[PostgreSQLSyncConnectionManager], schema: str) -> bool:
    with cursor(manager, Mode.AUTOCOMMIT) as cur:
        return table_exists(cur, schema, "checkpoints")


def _positive(ttl: timedelta, name: str) -> timedelta:
    if ttl <= timedelta(0):
        raise ValueError(f"{name} must be a positive duration, got {ttl}")
    return ttl
