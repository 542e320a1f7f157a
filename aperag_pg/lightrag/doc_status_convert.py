"""Plain results of ``DocStatusStore`` -> lightrag-hku 1.5.7's doc-status types, and back
for the cursor positions LightRAG passes in. The store never imports LightRAG; this does.
"""

from __future__ import annotations

from typing import Any

from lightrag.base import (
    CURSOR_END,
    CURSOR_START,
    CursorAfter,
    CursorPosition,
    DocProcessingStatus,
    DocSchedulingRecord,
    DocStatus,
    DocStatusPage,
    SourceAbsent,
    SourceConflict,
    SourceConflictPage,
    SourceConflictRepairResult,
    SourceConflictSummary,
    SourceUnique,
)


def status_map(docs: dict[str, dict[str, Any]]) -> dict[str, DocProcessingStatus]:
    return {doc_id: DocProcessingStatus(**doc) for doc_id, doc in docs.items()}


def record(row: dict[str, Any]) -> DocSchedulingRecord:
    return DocSchedulingRecord(**{**row, "status": DocStatus(row["status"])})


def record_map(rows: dict[str, dict[str, Any]]) -> dict[str, DocSchedulingRecord]:
    return {doc_id: record(row) for doc_id, row in rows.items()}


def status_page(result: tuple[list, int]) -> tuple[list[tuple[str, DocProcessingStatus]], int]:
    docs, total = result
    return [(doc_id, DocProcessingStatus(**doc)) for doc_id, doc in docs], total


def source(result: dict[str, Any]) -> SourceAbsent | SourceUnique | SourceConflict:
    if result["kind"] == "absent":
        return SourceAbsent()
    if result["kind"] == "unique":
        return SourceUnique(result["doc_id"], record(result["doc"]))
    return SourceConflict(result["candidate_count"], tuple(result["sample_doc_ids"]))


def repair_result(result: dict[str, Any]) -> SourceConflictRepairResult:
    return SourceConflictRepairResult(**result)


def cursor_in(position: CursorPosition) -> str | None:
    """LightRAG's position -> the store's: None for the start, else the opaque string."""
    if position is CURSOR_START:
        return None
    if isinstance(position, CursorAfter):
        return position.opaque
    raise ValueError(f"unsupported cursor position {position!r}")


def cursor_out(cursor: str | None) -> CursorPosition:
    return CURSOR_END if cursor is None else CursorAfter(cursor)


def scheduling_page(result: tuple[dict, str | None]) -> DocStatusPage:
    rows, cursor = result
    return DocStatusPage(record_map(rows), cursor_out(cursor))


def conflict_page(result: tuple[list, str | None]) -> SourceConflictPage:
    summaries, cursor = result
    return SourceConflictPage(
        tuple(
            SourceConflictSummary(**{**s, "sample_doc_ids": tuple(s["sample_doc_ids"])})
            for s in summaries
        ),
        cursor_out(cursor),
    )
