"""A workspace's one LightRAG writer, across worker processes, hosts and LightRAG's server.

LightRAG's pipeline assumes one writer per workspace: its "busy" flag lives in the
process, and every ingest processes all pending documents of the workspace, so two
processes would process the same documents twice. The writer holds a lease
(``leases.py``), not a lock held by an open transaction, so that an ingest pins no server
connection behind PgBouncer; the lease fences the workspace's store writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..environment import writer_lease_ttl
from ..manager import PostgreSQLSyncConnectionManager
from ..settings import load_environment
from ..stores.base import workspace_fence
from ..stores.leases import current_holder, hold_lease

WRITER_LEASE_PREFIX = "lightrag-writer:"


def writer_lease(workspace: str) -> str:
    """The name of a workspace's writer lease."""
    return WRITER_LEASE_PREFIX + workspace


@contextmanager
def one_writer(workspace: str) -> Iterator[None]:
    """Hold the workspace's writer lease (waiting for it as long as it takes), with the
    workspace's store writes fenced by it."""
    settings = PostgreSQLSyncConnectionManager.settings()
    with hold_lease(
        writer_lease(workspace),
        ttl=writer_lease_ttl(load_environment()),
        fence=workspace_fence(settings.schema, workspace),
    ):
        yield


def writer_now(workspace: str) -> str | None:
    """Who holds the workspace's writer lease now (``host:pid:...``), or None."""
    return current_holder(writer_lease(workspace))
