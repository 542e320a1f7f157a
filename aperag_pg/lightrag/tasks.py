"""Celery tasks that run LightRAG on the PGSync storages.

Each worker process builds one LightRAG instance per workspace and reuses it in every
task, running its async work on the process's one event loop (``run_async``). The PGSync
storages would also work from a new ``asyncio.run`` loop per task, but LightRAG's own LLM
and embedding queues are bound to the loop that first used them and log errors and
restart when they meet another one; one loop per process avoids that.

Storages come from LIGHTRAG_*_STORAGE, by default the four PGSync ones, so every worker
process on every host reads and writes the same knowledge in PostgreSQL, and a restart
loses nothing. LightRAG still wants a working directory, ``LIGHTRAG_WORKING_DIR/<host>-<pid>``;
with the default storages nothing is kept there (a file-based storage chosen by
LIGHTRAG_*_STORAGE would keep its files there, private to the process).
"""

from __future__ import annotations

import hashlib
import os
import reprlib
import threading
from collections import OrderedDict
from typing import Any

from celery import shared_task

from ..manager import PostgreSQLSyncConnectionManager
from ..worker import database_time, run_async
from . import lifecycle
from .ingest import ingest_once
from .instance import instance_arguments
from .writer import one_writer

# Least recently used instances are finalized past this many, so a worker serving many
# tenants does not keep every tenant's LightRAG (and its in-memory graph) forever.
MAX_INSTANCES = 32
_instances: OrderedDict[tuple[int, str], Any] = OrderedDict()
_lock = threading.Lock()


def rag_for(workspace: str) -> Any:
    """This process's LightRAG instance for ``workspace``, built and initialized once."""
    key = (os.getpid(), workspace)
    evicted = []
    with _lock:
        if key in _instances:
            _instances.move_to_end(key)
        else:
            _instances[key] = _build(workspace)
            while len(_instances) > MAX_INSTANCES:
                evicted.append(_instances.popitem(last=False)[1])
        rag = _instances[key]
    for old in evicted:
        run_async(old.finalize_storages())
    return rag


def _build(workspace: str) -> Any:
    from lightrag import LightRAG

    rag = LightRAG(**instance_arguments(workspace))
    run_async(rag.initialize_storages())
    return rag


def _process_report(rag: Any, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "instance": id(rag),
        "pool": PostgreSQLSyncConnectionManager.stats(),
        **usage,
    }


def _documents_of(_task: Any, args: tuple, kwargs: dict) -> str:
    """An ingest's work, named by its files (for TaskKeepsCrashing)."""
    paths = kwargs.get("file_paths", args[2] if len(args) > 2 else [])
    workspace = kwargs.get("workspace", args[0] if args else "?")
    return f"{len(paths)} document(s) of workspace {workspace!r}: {reprlib.repr(list(paths))}"


@shared_task(name="aperag_pg.lightrag_ingest", describe_work=_documents_of)
def lightrag_ingest(workspace: str, texts: list[str], file_paths: list[str]) -> dict[str, Any]:
    """Bring the documents through LightRAG's pipeline. Safe to run again (a redelivery after
    its worker died): processed documents are skipped, half-done ones finished, failed ones
    tried again, none duplicated. Fails with DocumentsFailed if any ends failed."""
    rag = rag_for(workspace)
    with one_writer(workspace), database_time() as usage:  # usage: not the lock's wait
        report = run_async(ingest_once(rag, texts, file_paths))
        counts = run_async(rag.doc_status.get_all_status_counts())
    return {**_process_report(rag, usage), "status_counts": counts, **report.as_dict()}


def context_digest(context: str) -> str:
    """Tells whether two answers were built from the same knowledge, without shipping it.
    Order-blind: LightRAG lists equal-ranked entities in an order that follows Python's
    per-process string hashing, so two processes may list the same knowledge differently."""
    lines = "\n".join(sorted(context.splitlines()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()[:16]


@shared_task(name="aperag_pg.lightrag_query")
def lightrag_query(workspace: str, question: str, mode: str = "hybrid") -> dict[str, Any]:
    """Answer ``question`` from the workspace's knowledge; returns the answer, and the size and
    a digest of the context it was built from."""
    from lightrag import QueryParam

    rag = rag_for(workspace)
    with database_time() as usage:
        context_param = QueryParam(mode=mode, only_need_context=True)
        context = run_async(rag.aquery(question, param=context_param))
        answer = run_async(rag.aquery(question, param=QueryParam(mode=mode)))
    report = _process_report(rag, usage)
    context = context or ""
    return {
        **report,
        "answer": answer,
        "context_chars": len(context),
        "context_digest": context_digest(context),
    }


@shared_task(name="aperag_pg.lightrag_status")
def lightrag_status(
    workspace: str, page: int = 1, page_size: int = 50, status: str | None = None
) -> dict[str, Any]:
    """Document counts by status and one page of documents with their status and error."""
    rag = rag_for(workspace)
    return run_async(lifecycle.status_page(rag, page, page_size, status))


@shared_task(name="aperag_pg.lightrag_delete")
def lightrag_delete(workspace: str, doc_ids: list[str]) -> dict[str, Any]:
    """Delete documents by id from all four storages; already deleted ones are no error."""
    rag = rag_for(workspace)
    with one_writer(workspace):
        return run_async(lifecycle.delete_documents(rag, doc_ids))


@shared_task(name="aperag_pg.lightrag_retry_failed")
def lightrag_retry_failed(workspace: str) -> dict[str, Any]:
    """Run the workspace's failed documents through the pipeline again."""
    rag = rag_for(workspace)
    with one_writer(workspace):
        return run_async(lifecycle.retry_failed(rag))


@shared_task(name="aperag_pg.lightrag_clear")
def lightrag_clear(workspace: str) -> dict[str, Any]:
    """Delete everything the workspace holds in every LightRAG storage."""
    rag = rag_for(workspace)
    with one_writer(workspace):
        return run_async(lifecycle.clear_workspace(rag))
