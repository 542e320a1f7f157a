"""Row and value conversion of the document-status store (``doc_status.py``): LightRAG's
row handling (lightrag-hku 1.5.7 ``PGDocStatusStorage``), reimplemented as pure functions.

Timestamps (stored naive UTC, read back as ISO strings with an offset), the opaque paging
cursor and the source-conflict cursor and fingerprint, status values, the input checks that
need no database, and rows -> *doc* / *record* dicts. Nothing here touches a database.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from ..errors import InvalidInput, MalformedCursor, UnusableDocStatusRow
from ..values import check_storable, jsonb_text

logger = logging.getLogger(__name__)

# DocStatus values of lightrag-hku 1.5.7; a stored status outside them is unusable for
# scheduling (LightRAG's DocStatus(...) would raise).
DOC_STATUS_VALUES = frozenset(
    {"pending", "parsing", "analyzing", "processing", "preprocessed", "processed", "failed"}
)
_JSON_COLUMNS = frozenset({"chunks_list", "metadata"})
_TIMESTAMP_COLUMNS = frozenset({"created_at", "updated_at"})


def format_timestamp(value: datetime.datetime | None) -> str | None:
    """LightRAG's ``_format_datetime_with_timezone``: naive means UTC; ISO with offset."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.isoformat()


def parse_timestamp(value: Any, what: str) -> datetime.datetime | None:
    """LightRAG's ``_parse_doc_status_datetime``: a datetime, date or ISO string to naive
    UTC (naive input means UTC). LightRAG stores NULL for an unparsable value; we refuse it.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):
        parsed = datetime.datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"{what} {value!r:.60} is not an ISO 8601 timestamp (or a datetime): pass "
                "e.g. datetime.now(timezone.utc).isoformat(); nothing was written."
            ) from None
    if parsed.tzinfo is None:
        return parsed
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def encode_cursor(created_at: datetime.datetime | None, doc_id: str) -> str:
    """LightRAG's ``_encode_cursor``: ``json.dumps([created_at_iso | None, id])``."""
    if not isinstance(created_at, datetime.datetime):
        return json.dumps([None, str(doc_id)])
    return json.dumps([format_timestamp(created_at), str(doc_id)])


def decode_cursor(opaque: str) -> tuple[datetime.datetime | None, str]:
    """LightRAG's ``_decode_cursor``: back to (naive UTC created_at or None, id)."""
    try:
        decoded = json.loads(opaque)
        if not isinstance(decoded, list) or len(decoded) != 2:
            raise ValueError("expected a JSON array [created_at, id]")
        created_iso, doc_id = decoded
        if not isinstance(doc_id, str):
            raise ValueError("cursor id must be a string")
        if created_iso is None:
            return None, doc_id
        if not isinstance(created_iso, str):
            raise ValueError("cursor created_at must be a string or null")
        created = datetime.datetime.fromisoformat(created_iso)
    except (TypeError, ValueError) as exc:
        raise MalformedCursor(
            f"malformed doc-status page cursor ({exc}): pass the cursor a previous page "
            "returned, or None to start over."
        ) from exc
    if created.tzinfo is not None:
        created = created.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return created, doc_id


def conflict_fingerprint(sorted_doc_ids: Iterable[str]) -> str:
    """LightRAG's ``_conflict_fingerprint``: sha256 over the ids, each NUL-terminated."""
    digest = hashlib.sha256()
    for doc_id in sorted_doc_ids:
        digest.update(doc_id.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def encode_conflict_cursor(canonical_source_key: str) -> str:
    """The source-conflict cursor: the last canonical source key of a page, as JSON."""
    return json.dumps(canonical_source_key, ensure_ascii=False)


def decode_conflict_cursor(opaque: str) -> str:
    try:
        key = json.loads(opaque)
    except (TypeError, ValueError) as exc:
        raise MalformedCursor(f"malformed source-conflict cursor ({exc}).") from exc
    if not isinstance(key, str):
        raise MalformedCursor("malformed source-conflict cursor: it must encode a string.")
    return key


def status_value(status: Any) -> Any:
    """DocStatus (a str Enum) -> its value; a plain string stays as it is."""
    return status.value if isinstance(status, Enum) else status


def status_list(statuses: Iterable[Any]) -> list[str]:
    values = [status_value(s) for s in statuses]
    for value in values:
        if not isinstance(value, str):
            raise InvalidInput(f"a status must be a DocStatus or a string, got {value!r:.60}")
        check_storable(value, "status")
    return list(dict.fromkeys(values))  # a repeated status adds nothing


def read_ids(ids: Iterable[Any], what: str = "doc id") -> list[str]:
    """Ids to look up: strings as given (``str()`` of anything else, like LightRAG)."""
    values = [str(i) for i in ids]
    check_storable(values, what)
    return values


def column_value(column: str, value: Any, where: str) -> Any:
    """A value for update_doc_status_fields to write to ``column``: JSON and timestamps as
    upsert writes them, a DocStatus as its value; ``where`` names it in an error."""
    if column in _JSON_COLUMNS:
        return value if isinstance(value, str) else jsonb_text(value, f"{where} {column}")
    if column in _TIMESTAMP_COLUMNS:
        return parse_timestamp(value, f"{where} {column}")
    return status_value(value)


def doc_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as LightRAG's get_by_id returns it: DocProcessingStatus's fields, timestamps as
    ISO strings, JSON decoded, NULLs kept."""
    return {
        "content_summary": row["content_summary"],
        "content_length": row["content_length"],
        "file_path": row["file_path"],
        "status": row["status"],
        "created_at": format_timestamp(row["created_at"]),
        "updated_at": format_timestamp(row["updated_at"]),
        "track_id": row["track_id"],
        "chunks_count": row["chunks_count"],
        "chunks_list": row.get("chunks_list", []),
        "error_msg": row["error_msg"],
        "metadata": row["metadata"],
        "content_hash": row["content_hash"],
    }


def status_doc_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """LightRAG's ``_pg_doc_processing_status_from_row``: like ``doc_from_row``, but an empty
    file_path reads "no-file-path" and non-object metadata reads {}."""
    metadata = row["metadata"]
    return {
        **doc_from_row(row),
        "file_path": row["file_path"] or "no-file-path",
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def record_from_row(row: Mapping[str, Any], *, strict: bool) -> dict[str, Any] | None:
    """LightRAG's ``_pg_scheduling_record_from_row``: DocSchedulingRecord's fields, or
    None (relaxed) / UnusableDocStatusRow (strict) for a row it cannot represent."""
    doc_id = str(row["id"] or "")
    status = str(row["status"])
    created_at = row["created_at"]
    if not doc_id:
        problem = "its id is empty"
    elif status not in DOC_STATUS_VALUES:
        problem = f"its status {status!r} is not a DocStatus value"
    elif not isinstance(created_at, datetime.datetime):
        problem = "its created_at is NULL"
    else:
        return {
            "id": doc_id,
            "status": status,
            "created_at": format_timestamp(created_at),
            "updated_at": format_timestamp(row["updated_at"] or created_at),
            "file_path": row["file_path"] or "no-file-path",
            "track_id": row["track_id"],
            "has_custom_chunk_journal": bool(row["has_custom_chunk_journal"]),
        }
    if strict:
        raise UnusableDocStatusRow(
            f"doc_status row {doc_id!r} cannot be scheduled: {problem}. Repair or delete the "
            "row (every LightRAG write path stamps created_at and a valid status)."
        )
    logger.warning("skipped an unusable doc_status row in a relaxed read: %s", problem)
    return None


def records_from_rows(
    rows: Iterable[Mapping[str, Any]], *, strict: bool
) -> dict[str, dict[str, Any]]:
    records = (record_from_row(row, strict=strict) for row in rows)
    return {r["id"]: r for r in records if r is not None}
