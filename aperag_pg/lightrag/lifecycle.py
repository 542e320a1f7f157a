"""A workspace's documents after ingest: their status, deleting them, retrying the failed
ones, clearing the workspace. Each returns plain JSON-able data; the Celery tasks in
``tasks.py`` run them under the workspace's writer lock where they write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import AperagPGError, InvalidInput
from ..manager import PostgreSQLSyncConnectionManager
from .ingest import finish

# What LightRAG's API server drops to clear a workspace (documents/clear), by attribute.
WORKSPACE_STORAGES = (
    "text_chunks",
    "full_docs",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
    "entities_vdb",
    "relationships_vdb",
    "chunks_vdb",
    "chunk_entity_relation_graph",
    "doc_status",
)


class LifecycleFailed(AperagPGError):
    """A delete or clear did not complete; the message names what is left."""


async def status_page(
    rag: Any, page: int = 1, page_size: int = 50, status: str | None = None
) -> dict[str, Any]:
    """Counts by status, and one page of documents (newest first) with status and error."""
    from lightrag.base import DocStatus

    if not (isinstance(page, int) and page >= 1 and isinstance(page_size, int)):
        raise InvalidInput(f"page must be a whole number from 1, got {page!r:.20}")
    if not 10 <= page_size <= 200:  # LightRAG's document pages hold 10 to 200
        raise InvalidInput(f"page_size must be from 10 to 200 (LightRAG's limits), got {page_size}")
    if status is not None and status not in {s.value for s in DocStatus}:
        valid = ", ".join(s.value for s in DocStatus)
        raise InvalidInput(f"status {status!r} is not one of {valid}")

    counts = await rag.doc_status.get_all_status_counts()
    wanted = DocStatus(status) if status else None
    docs, total = await rag.doc_status.get_docs_paginated(
        status_filter=wanted, page=page, page_size=page_size
    )
    return {
        "counts": counts,
        "total": total,
        "page": page,
        "page_size": page_size,
        "documents": [
            {
                "id": doc_id,
                "file_path": doc.file_path,
                "status": getattr(doc.status, "value", str(doc.status)),
                "error": doc.error_msg or None,
                "chunks": doc.chunks_count,
                "updated_at": str(doc.updated_at),
            }
            for doc_id, doc in docs
        ],
    }


async def delete_documents(rag: Any, doc_ids: Sequence[str]) -> dict[str, Any]:
    """Delete each document from all four storages (entities and relations it shares with
    other documents stay, rebuilt from those). Deleting one already gone is no error, so a
    redelivered delete is harmless."""
    outcome: dict[str, str] = {}
    for doc_id in doc_ids:
        result = await rag.adelete_by_doc_id(doc_id)
        outcome[doc_id] = result.status
        if result.status not in ("success", "not_found"):
            raise LifecycleFailed(
                f"deleting document {doc_id!r} ended {result.status!r}: {result.message}. "
                f"Deleted before it: {[d for d, s in outcome.items() if s == 'success']}."
            )
    return {"deleted": outcome}


async def retry_failed(rag: Any) -> dict[str, Any]:
    """Set every failed document back to pending and run the pipeline again; LightRAG's
    duplicate-file records (``dup-...``) are not documents and are left alone."""
    from lightrag.base import DocStatus

    failed = await rag.doc_status.get_docs_by_statuses([DocStatus.FAILED])
    retried = [
        doc_id for doc_id, doc in failed.items() if not (doc.metadata or {}).get("is_duplicate")
    ]
    trouble_before = PostgreSQLSyncConnectionManager.trouble()
    for doc_id in retried:
        await rag.doc_status.update_doc_status_fields(
            doc_id, {"status": DocStatus.PENDING, "error_msg": ""}
        )
    statuses = await finish(rag, retried, trouble_since=trouble_before)
    return {"retried": retried, "statuses": statuses}


async def clear_workspace(rag: Any) -> dict[str, Any]:
    """Drop every storage of the workspace, as LightRAG's API server clears one."""
    dropped = {name: await getattr(rag, name).drop() for name in WORKSPACE_STORAGES}
    failed = {name: r for name, r in dropped.items() if r.get("status") != "success"}
    if failed:
        raise LifecycleFailed(
            f"clearing the workspace failed for {', '.join(failed)}: "
            f"{'; '.join(r.get('message', '') for r in failed.values())}. Send it again."
        )
    return {"cleared": list(dropped)}
