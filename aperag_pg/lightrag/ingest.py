"""Ingest that is safe to run twice: what a task does when its last delivery died midway.

LightRAG 1.5.7 names a document after its file (``doc-`` + the hash of the file's base
name) and, asked to insert a name it already holds, writes a FAILED ``dup-...`` record
instead, whatever state the first one is in. So a redelivered ``ainsert`` of the same
files would leave a phantom failure per file. Instead, each file's document is looked up
first:

- absent: inserted;
- processed: left alone;
- pending, parsing, analyzing or processing (a dead process's work): LightRAG's own
  pipeline resets these to pending at its next run and processes them again, purging
  their partial chunks and graph first, so nothing is written twice;
- failed: set back to pending, so this delivery tries it again.

LightRAG's pipeline catches a document's errors and keeps only their text, so a
database that went away for a moment (a restart, a cut connection) leaves documents
failed while the task would return normally. When documents fail and that text, or this
process's pool, shows such trouble during the ingest, the task fails with
``DocumentsFailedTransiently``, which DatabaseTask retries; the retry finds them failed
and runs them again. Other failures, or the same after the last retry, fail the task
naming the documents: a task never reports success with failed documents in it. Nor
with documents still on their way: LightRAG's pipeline returns at once when it is busy
(with a run an earlier, failed delivery left going), and then ``DocumentsUnfinished``
has the task retried until they are processed. A fault between LightRAG's purge of a
half-done document and its next merge can leave the document without the recovery anchors
LightRAG demands before it purges again; the ingest then runs LightRAG's own repair
(``audit_kg_integrity(apply=True)``) and fails transiently, and the retry goes through.

A text without a usable file name (none, "", or one of LightRAG's placeholders such as
"unknown_source") is tracked the same way, by the id LightRAG gives it: the hash of its
content. The caller holds the workspace's writer lease (LightRAG assumes one writer).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AperagPGError, TransientFailure
from ..manager import PostgreSQLSyncConnectionManager

logger = logging.getLogger(__name__)

# What psycopg2, libpq and the package say when the database went away for a moment.
TRANSIENT_SIGNS = (
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "connection already closed",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error",
    "connection refused",
    "cannot connect to postgresql",
    "no free postgresql connection",
    "deadlock detected",
    "could not serialize access",
)


# LightRAG's RecoveryAnchorMissingError, as its pipeline records it in error_msg.
ANCHORS_MISSING = "recovery anchor row(s) missing"


class DocumentsFailed(AperagPGError):
    """LightRAG's pipeline marked some of an ingest's documents failed."""


class DocumentsFailedTransiently(DocumentsFailed, TransientFailure):
    """Documents failed while the database was briefly away: the task is retried."""


class DocumentsUnfinished(TransientFailure):
    """LightRAG's pipeline returned with documents still on their way (it was busy with an
    earlier run, left going by a delivery that failed): the task is retried, and finds
    them processed or runs them again."""


@dataclass
class IngestReport:
    """What one delivery of an ingest found and did, by document id."""

    inserted: list[str] = field(default_factory=list)
    already_processed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # left midway by an earlier delivery
    retried: list[str] = field(default_factory=list)  # failed before, pending again now
    statuses: dict[str, str] = field(default_factory=dict)  # every document, at the end

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def document_id(text: str, file_path: str) -> str:
    """LightRAG 1.5.7's id for the document of ``text`` named ``file_path``: the hash of
    the file's canonical name, or of the (sanitized) text when it has no usable name."""
    from lightrag.utils import compute_mdhash_id, sanitize_text_for_encoding
    from lightrag.utils_pipeline import has_known_document_source, normalize_document_file_path

    canonical = normalize_document_file_path(file_path)
    if has_known_document_source(canonical):
        return compute_mdhash_id(canonical, prefix="doc-")
    return compute_mdhash_id(sanitize_text_for_encoding(text), prefix="doc-")


async def ingest_once(rag: Any, texts: Sequence[str], file_paths: Sequence[str]) -> IngestReport:
    """Bring every text's document to processed, without duplicating any; raise
    ``DocumentsFailed`` naming the documents LightRAG could not process."""
    from lightrag.base import DocStatus

    if len(texts) != len(file_paths):
        raise ValueError(f"{len(texts)} texts but {len(file_paths)} file paths")
    ids = [document_id(text, path) for text, path in zip(texts, file_paths, strict=True)]
    known = list(dict.fromkeys(ids))  # LightRAG keeps one document per id
    trouble_before = PostgreSQLSyncConnectionManager.trouble()
    existing = await _statuses(rag, known)
    report = IngestReport()
    new_texts, new_paths = [], []
    for text, path, doc_id in zip(texts, file_paths, ids, strict=True):
        status = existing.get(doc_id)
        if doc_id in report.inserted:
            continue  # the same file (or unnamed text) twice: LightRAG keeps the first
        if status is None:
            new_texts.append(text)
            new_paths.append(path)
            report.inserted.append(doc_id)
        elif status == DocStatus.PROCESSED:
            report.already_processed.append(doc_id)
        elif status == DocStatus.FAILED:
            await rag.doc_status.update_doc_status_fields(
                doc_id, {"status": DocStatus.PENDING, "error_msg": ""}
            )
            report.retried.append(doc_id)
        else:
            report.resumed.append(doc_id)
    if new_texts:
        await rag.ainsert(new_texts, file_paths=new_paths)  # also runs the pipeline
    report.statuses = await finish(
        rag, known, run_pipeline=not new_texts, trouble_since=trouble_before
    )
    return report


async def finish(
    rag: Any, doc_ids: list[str], run_pipeline: bool = True, trouble_since: int | None = None
) -> dict[str, str]:
    """Run LightRAG's pipeline (pending and half-done documents), then the status of each of
    ``doc_ids``; ``DocumentsFailed`` naming those that ended failed (the transient kind when
    the database was away meanwhile: see the module's docstring)."""
    from lightrag.base import DocStatus

    if run_pipeline:
        await rag.apipeline_process_enqueue_documents()
    final = await _records(rag, doc_ids)
    failed = {
        doc_id: (record.get("file_path"), record.get("error_msg"))
        for doc_id, record in final.items()
        if record["status"] == DocStatus.FAILED
    }
    if failed:
        named = "; ".join(f"{path} ({doc_id}): {error}" for doc_id, (path, error) in failed.items())
        transient = any(_looks_transient(error) for _, error in failed.values()) or (
            trouble_since is not None and PostgreSQLSyncConnectionManager.trouble() > trouble_since
        )
        refused = [doc for doc, (_, error) in failed.items() if ANCHORS_MISSING in (error or "")]
        if refused:
            transient = await _rebuild_recovery_anchors(rag, refused) or transient
        raise (DocumentsFailedTransiently if transient else DocumentsFailed)(
            f"{len(failed)} of {len(doc_ids)} documents failed in LightRAG's pipeline: {named}. "
            "Fix the cause and send the task again: processed documents are skipped and "
            "failed ones are tried again."
        )
    statuses = {
        doc_id: final[doc_id]["status"] if doc_id in final else "missing" for doc_id in doc_ids
    }
    unfinished = {
        doc_id: status for doc_id, status in statuses.items() if status != DocStatus.PROCESSED
    }
    if unfinished:
        raise DocumentsUnfinished(
            f"{len(unfinished)} of {len(doc_ids)} documents are not processed yet after "
            f"LightRAG's pipeline returned: {unfinished}. The task is retried; a task never "
            "reports success with unprocessed documents."
        )
    return statuses


async def _rebuild_recovery_anchors(rag: Any, refused: list[str]) -> bool:
    """LightRAG's own remedy for documents it refuses to purge because their recovery
    anchors are gone (a fault between a purge and the next merge can leave that behind):
    rebuild them from the graph, so that the retry's purge goes through. The audit rebuilds
    only what the graph still names; an anchor row of ``refused`` that is still missing
    (its edges were purged with it, say) is written empty, as the audit writes those of a
    document with no graph contributions (a union: nothing is removed). True if repaired."""
    from lightrag.tools.kg_integrity_repair import audit_kg_integrity

    report = await audit_kg_integrity(rag, apply=True)
    repaired = bool(report.get("repaired_docs") or report.get("anchorless_docs"))
    for doc_id in refused:
        entities = await rag.full_entities.get_by_id(doc_id)
        relations = await rag.full_relations.get_by_id(doc_id)
        if entities is None or relations is None:
            await rag._union_doc_recovery_anchors(doc_id, [], [])
            repaired = True
    logger.warning(
        "workspace %s: rebuilt the recovery anchors of %d document(s) LightRAG refused to "
        "purge; the task is retried",
        rag.workspace,
        len(report.get("repaired_docs") or ()) + len(report.get("anchorless_docs") or ()),
    )
    return repaired


def _looks_transient(error: str | None) -> bool:
    text = (error or "").lower()
    return any(sign in text for sign in TRANSIENT_SIGNS)


async def _records(rag: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The doc-status records of ``ids`` that exist, in one read."""
    if not ids:
        return {}
    records = await rag.doc_status.get_by_ids(ids)
    return {doc_id: record for doc_id, record in zip(ids, records, strict=True) if record}


async def _statuses(rag: Any, ids: list[str]) -> dict[str, str]:
    return {doc_id: record["status"] for doc_id, record in (await _records(rag, ids)).items()}
