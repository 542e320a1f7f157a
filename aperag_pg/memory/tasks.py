"""The store's TTL sweep, for Celery beat (``config/celery.py`` schedules it every
STORE_SWEEP_INTERVAL_MINUTES): one sweep for the deployment instead of upstream's
sweeper thread in every process."""

from __future__ import annotations

import os

from celery import shared_task

from ..cursors import Mode, cursor
from ..manager import PostgreSQLSyncConnectionManager as Manager
from ..schema import table_exists
from .store import PGSyncStore


@shared_task(name="aperag_pg.sweep_store")
def sweep_store(schema: str | None = None) -> dict:
    """Delete the LangGraph memory items whose TTL ran out in ``schema`` (default
    POSTGRES_SCHEMA). A schema without the store tables has nothing to sweep."""
    store = PGSyncStore(schema=schema)
    with cursor(Manager, Mode.AUTOCOMMIT) as cur:
        has_store = table_exists(cur, store.schema, "store")
    deleted = store.sweep_ttl() if has_store else 0
    return {"pid": os.getpid(), "schema": store.schema, "deleted": deleted, "swept": has_store}
