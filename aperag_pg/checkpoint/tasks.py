"""The checkpoint retention task, for Celery beat (``config/celery.py`` schedules it)."""

from __future__ import annotations

import os

from celery import shared_task

from ..environment import CHECKPOINT_HISTORY_TTL_DAYS, CHECKPOINT_THREAD_TTL_DAYS
from ..settings import load_environment
from . import retention


@shared_task(name="aperag_pg.prune_checkpoints")
def prune_checkpoints(
    thread_ttl_days: float | None = None,
    history_ttl_days: float | None = None,
    max_threads: int = 1000,
) -> dict:
    """Checkpoint retention, for Celery beat: delete threads idle for ``thread_ttl_days`` and
    checkpoints older than ``history_ttl_days`` (each thread keeps its latest).

    Unset arguments come from CHECKPOINT_THREAD_TTL_DAYS and CHECKPOINT_HISTORY_TTL_DAYS;
    with neither set, nothing is deleted.
    """
    env = load_environment()
    report = retention.apply_retention(
        thread_ttl=retention.ttl(thread_ttl_days, env, CHECKPOINT_THREAD_TTL_DAYS),
        history_ttl=retention.ttl(history_ttl_days, env, CHECKPOINT_HISTORY_TTL_DAYS),
        max_threads=max_threads,
    )
    return {"pid": os.getpid(), **report.as_dict()}
