"""The document-status store: LightRAG's LIGHTRAG_DOC_STATUS table, synchronously
(lightrag-hku 1.5.7 ``PGDocStatusStorage``).

Same table, columns, indexes, queries and row shapes as ``PGDocStatusStorage``, so
LightRAG and this store read each other's rows, and a scheduling cursor made by one
resumes in the other. The store never imports lightrag; it returns plain data that the
async facade turns into LightRAG's types:

- a *doc* dict has exactly the fields of ``DocProcessingStatus`` (``status`` is the
  stored string, as LightRAG passes it): ``DocProcessingStatus(**doc)``;
- a *record* dict has exactly the fields of ``DocSchedulingRecord`` with ``status`` as a
  string: ``DocSchedulingRecord(**{**record, "status": DocStatus(record["status"])})``;
- a cursor is LightRAG's opaque string (``CursorAfter.opaque``); ``None`` passed in means
  ``CURSOR_START``, ``None`` returned means ``CURSOR_END``.

Statuses may be given as LightRAG's ``DocStatus`` (a ``str`` Enum) or as its value.

Mirrored on purpose, because LightRAG does it: ``upsert`` overwrites ``created_at`` and
keeps a stored ``content_hash`` when the new one is empty; a record without
``created_at`` is stored with NULL there, sorts first in a sweep and makes a strict page
raise; timestamps are stored as naive UTC and read back as ISO strings with ``+00:00``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from operator import itemgetter
from typing import Any

from psycopg2 import sql

from ..batching import DEFAULT_CHUNK_SIZE, chunked, execute_values_chunked, in_lock_order
from ..cursors import Mode
from ..errors import (
    DocStatusNotFound,
    InvalidInput,
    MalformedCursor,
    SourceConflictChanged,
    UnusableDocStatusRow,
)
from ..manager import PostgreSQLSyncConnectionManager
from ..values import check_column, check_storable, jsonb_text
from .base import SyncStore, check_key, table_for_namespace

logger = logging.getLogger(__name__)

TABLE = "LIGHTRAG_DOC_STATUS"

# DocStatus values of lightrag-hku 1.5.7; a stored status outside them is unusable for
# scheduling (LightRAG's DocStatus(...) would raise).
DOC_STATUS_VALUES = frozenset(
    {"pending", "parsing", "analyzing", "processing", "preprocessed", "processed", "failed"}
)
CUSTOM_CHUNK_PATCH_METADATA_KEY = "custom_chunk_patch"  # lightrag.constants
CONFLICT_SAMPLE_CAP = 32  # PGDocStatusStorage._CONFLICT_SAMPLE_CAP
UNKNOWN_SOURCE = "unknown_source"

SORT_FIELDS = ("created_at", "updated_at", "id", "file_path")  # get_docs_paginated
_JSON_COLUMNS = frozenset({"chunks_list", "metadata"})
_TIMESTAMP_COLUMNS = frozenset({"created_at", "updated_at"})
_REQUIRED_FIELDS = ("content_summary", "content_length", "status", "file_path")
# The columns upsert writes after (workspace, id), in _UPSERT's order.
_UPSERT_COLUMNS = (
    "content_summary",
    "content_length",
    "chunks_count",
    "status",
    "file_path",
    "chunks_list",
    "track_id",
    "metadata",
    "error_msg",
    "content_hash",
    "created_at",
    "updated_at",
)
# Columns update_doc_status_fields may write; created_at is the immutable sweep key.
UPDATABLE_COLUMNS = frozenset(_UPSERT_COLUMNS) - {"created_at"}


# -- SQL ------------------------------------------------------------------------------
# {table} is the schema-qualified table; literal braces are doubled for sql.SQL.format.

_DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
    workspace varchar(255) NOT NULL,
    id varchar(255) NOT NULL,
    content_summary varchar(255) NULL,
    content_length int4 NULL,
    chunks_count int4 NULL,
    status varchar(64) NULL,
    file_path TEXT NULL,
    chunks_list JSONB NULL DEFAULT '[]'::jsonb,
    track_id varchar(255) NULL,
    metadata JSONB NULL DEFAULT '{{}}'::jsonb,
    error_msg TEXT NULL,
    content_hash TEXT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_DOC_STATUS_PK PRIMARY KEY (workspace, id)
)""",
    # PostgreSQLDB.check_tables: every table gets (id) and (workspace, id).
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_id ON {table} (id)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_id ON {table} (workspace, id)",
    # _migrate_doc_status_add_track_id
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_track_id ON {table} (track_id)",
    # _create_pagination_indexes
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_status_updated_at "
    "ON {table} (workspace, status, updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_status_created_at "
    "ON {table} (workspace, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_updated_at "
    "ON {table} (workspace, updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_created_at "
    "ON {table} (workspace, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_file_path "
    "ON {table} (workspace, file_path)",
    # _migrate_doc_status_add_content_hash
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_content_hash "
    "ON {table} (workspace, content_hash) WHERE content_hash IS NOT NULL AND content_hash <> ''",
    # _migrate_doc_status_add_scheduling_index: NULLS FIRST matches the sweep's ORDER BY.
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_ws_status_created_nf_id "
    "ON {table} (workspace, status, created_at NULLS FIRST, id)",
)
# The typed columns a record fills, with their types as the DDL above declares them: each
# value is checked against its column (aperag_pg.values.check_column) before any write.
_CHECKED_COLUMNS = {
    name: sql_type
    for name, sql_type in re.findall(r"^\s+(\w+) (varchar\(\d+\)|int4|TEXT)", _DDL[0], re.M)
    if name not in ("workspace", "id")
}

_DOC_COLUMNS = (
    "id, content_summary, content_length, chunks_count, status, file_path, chunks_list, "
    "track_id, metadata, error_msg, content_hash, created_at, updated_at"
)
# The scheduling projection: no chunks_list, no metadata blob, just the journal flag
# (LightRAG: isinstance(metadata.get(CUSTOM_CHUNK_PATCH_METADATA_KEY), dict)).
_RECORD_COLUMNS = (
    "id, status, created_at, updated_at, file_path, track_id, "
    "COALESCE(jsonb_typeof(metadata -> 'custom_chunk_patch') = 'object', false) "
    "AS has_custom_chunk_journal"
)
# Primary (non-duplicate) rows; a non-boolean is_duplicate raises, as in LightRAG.
_PRIMARY = "COALESCE((metadata->>'is_duplicate')::boolean, false) = false"

_SELECT_IDS = "SELECT id FROM {table} WHERE workspace = %s AND id = ANY(%s::text[])"
_SELECT_DOCS_BY_IDS = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND id = ANY(%s::text[])"
)
_SELECT_RECORDS_BY_IDS = (
    f"SELECT {_RECORD_COLUMNS} FROM {{table}} WHERE workspace = %s AND id = ANY(%s::text[])"
)
_SELECT_DOCS_BY_STATUSES = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND status = ANY(%s::text[])"
)
_SELECT_DOCS_BY_TRACK_ID = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND track_id = %s"
)
# LightRAG takes "the first row" without an order; the earliest makes it deterministic.
_SELECT_DOC_BY_FILE_PATH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    "ORDER BY created_at ASC, id ASC LIMIT 1"
)
_SELECT_PRIMARY_BY_FILE_PATH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY} ORDER BY created_at ASC, id ASC LIMIT 1"
)
_SELECT_DOC_BY_CONTENT_HASH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %(workspace)s "
    "AND content_hash = %(hash)s {exclude} ORDER BY created_at ASC, id ASC LIMIT 1"
)
# Neither the asking row nor a duplicate marker that points at it (see LightRAG's
# get_doc_by_content_hash contract); both stay WHERE predicates, so LIMIT 1 still
# finds the earliest remaining holder.
_EXCLUDE_DOC = (
    "AND id <> %(exclude)s AND NOT (COALESCE((metadata->>'is_duplicate')::boolean, false) "
    "AND COALESCE(metadata->>'original_doc_id', '') = %(exclude)s)"
)
_SELECT_PRIMARY_RECORDS = (
    f"SELECT {_RECORD_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY} ORDER BY created_at ASC, id ASC LIMIT 2"
)
_COUNT_PRIMARY = (
    f"SELECT count(*) AS count FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY}"
)
_LOCK_PRIMARY_IDS = (
    f"SELECT id FROM {{table}} WHERE workspace = %s AND file_path = %s AND {_PRIMARY} "
    "ORDER BY id ASC FOR UPDATE"
)
_DEMOTE = (
    "UPDATE {table} SET metadata = jsonb_set(jsonb_set(COALESCE(metadata, jsonb_build_object()), "
    "ARRAY['is_duplicate'], 'true'::jsonb, true), ARRAY['original_doc_id'], to_jsonb(%s::text), "
    "true) WHERE workspace = %s AND id = ANY(%s::text[])"
)
# Keyed by canonical source key; each group's sample is bounded inside the query.
_SELECT_CONFLICTS = (
    "SELECT g.file_path, g.count, s.sample FROM ("
    "  SELECT file_path, count(*) AS count FROM {table}"
    f"  WHERE workspace = %(workspace)s AND {_PRIMARY} AND file_path IS NOT NULL"
    "  AND file_path NOT IN ('', 'unknown_source', 'no-file-path')"
    "  AND (%(after)s::text IS NULL OR file_path > %(after)s::text)"
    "  GROUP BY file_path HAVING count(*) >= 2 ORDER BY file_path ASC LIMIT %(limit)s"
    ") g CROSS JOIN LATERAL ("
    "  SELECT array_agg(c.id ORDER BY c.id) AS sample FROM ("
    "    SELECT id FROM {table} WHERE workspace = %(workspace)s"
    f"    AND file_path = g.file_path AND {_PRIMARY} ORDER BY id ASC LIMIT %(cap)s"
    "  ) c"
    ") s ORDER BY g.file_path ASC"
)
_COUNT_BY_STATUSES = (
    "SELECT count(*) AS count FROM {table} WHERE workspace = %s AND status = ANY(%s::text[])"
)
_COUNT_BY_STATUS = (
    "SELECT status, count(*) AS count FROM {table} WHERE workspace = %s GROUP BY status"
)
_EXISTS = "SELECT EXISTS (SELECT 1 FROM {table} WHERE workspace = %s) AS found"
_DELETE_IDS = "DELETE FROM {table} WHERE workspace = %s AND id = ANY(%s::text[])"
_DELETE_WORKSPACE = "DELETE FROM {table} WHERE workspace = %s"
_UPDATE_FIELDS = "UPDATE {table} SET {assignments} WHERE workspace = %s AND id = %s RETURNING id"
_UPSERT = """INSERT INTO {table} (workspace, id, content_summary, content_length, chunks_count,
    status, file_path, chunks_list, track_id, metadata, error_msg, content_hash, created_at,
    updated_at)
VALUES %s
ON CONFLICT (id, workspace) DO UPDATE SET
    content_summary = EXCLUDED.content_summary,
    content_length = EXCLUDED.content_length,
    chunks_count = EXCLUDED.chunks_count,
    status = EXCLUDED.status,
    file_path = EXCLUDED.file_path,
    chunks_list = EXCLUDED.chunks_list,
    track_id = EXCLUDED.track_id,
    metadata = EXCLUDED.metadata,
    error_msg = EXCLUDED.error_msg,
    content_hash = COALESCE(NULLIF(EXCLUDED.content_hash, ''), {table}.content_hash),
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at"""

# The keyset sweep: per status, an ordered index scan of at most `limit` rows past the
# cursor (index ..._ws_status_created_nf_id); then the merged top `limit`. Every filter is
# in SQL, so the rows returned ARE the consumed frontier.
_SWEEP_ORDER = "ORDER BY created_at ASC NULLS FIRST, id ASC"
_SELECT_PAGE = (
    "SELECT d.* FROM unnest(%(statuses)s::text[]) AS s(status) CROSS JOIN LATERAL ("
    f"  SELECT {_RECORD_COLUMNS} FROM {{table}}"
    "  WHERE workspace = %(workspace)s AND status = s.status {after}"
    f"  {_SWEEP_ORDER} LIMIT %(limit)s"
    f") d {_SWEEP_ORDER} LIMIT %(limit)s"
)
# NULL created_at rows sort first; a cursor inside that bucket goes on through it by id
# and then to every real timestamp, a cursor past it compares the (created_at, id) key.
_AFTER_NULL_BUCKET = "AND ((created_at IS NULL AND id > %(after_id)s) OR created_at IS NOT NULL)"
_AFTER_KEY = (
    "AND created_at IS NOT NULL AND (created_at, id) > (%(after_created)s::timestamp, %(after_id)s)"
)

# One snapshot for the total and the page; the LEFT JOIN keeps the total when the page
# is past the end. chunks_list is not read: listings return it empty, like LightRAG.
_SELECT_PAGINATED = """WITH total AS (
    SELECT count(*) AS total FROM {table}
    WHERE workspace = %(workspace)s
      AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
), paged AS (
    SELECT id, content_summary, content_length, chunks_count, status, file_path, track_id,
           metadata, error_msg, content_hash, created_at, updated_at
    FROM {table}
    WHERE workspace = %(workspace)s
      AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
    ORDER BY {order}
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT p.*, t.total FROM total t LEFT JOIN paged p ON true ORDER BY {outer_order}"""


# -- pure helpers (LightRAG's row handling, reimplemented) ----------------------------


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


def _decode_conflict_cursor(opaque: str) -> str:
    try:
        key = json.loads(opaque)
    except (TypeError, ValueError) as exc:
        raise MalformedCursor(f"malformed source-conflict cursor ({exc}).") from exc
    if not isinstance(key, str):
        raise MalformedCursor("malformed source-conflict cursor: it must encode a string.")
    return key


def _status_value(status: Any) -> Any:
    """DocStatus (a str Enum) -> its value; a plain string stays as it is."""
    return status.value if isinstance(status, Enum) else status


def _status_list(statuses: Iterable[Any]) -> list[str]:
    values = [_status_value(s) for s in statuses]
    for value in values:
        if not isinstance(value, str):
            raise InvalidInput(f"a status must be a DocStatus or a string, got {value!r:.60}")
        check_storable(value, "status")
    return list(dict.fromkeys(values))  # a repeated status adds nothing


def _read_ids(ids: Iterable[Any], what: str = "doc id") -> list[str]:
    """Ids to look up: strings as given (``str()`` of anything else, like LightRAG)."""
    values = [str(i) for i in ids]
    check_storable(values, what)
    return values


def _doc(row: Mapping[str, Any]) -> dict[str, Any]:
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


def _status_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """LightRAG's ``_pg_doc_processing_status_from_row``: like ``_doc``, but an empty
    file_path reads "no-file-path" and non-object metadata reads {}."""
    metadata = row["metadata"]
    return {
        **_doc(row),
        "file_path": row["file_path"] or "no-file-path",
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def _record(row: Mapping[str, Any], *, strict: bool) -> dict[str, Any] | None:
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


def _records(rows: Iterable[Mapping[str, Any]], *, strict: bool) -> dict[str, dict[str, Any]]:
    records = (_record(row, strict=strict) for row in rows)
    return {r["id"]: r for r in records if r is not None}


class DocStatusStore(SyncStore):
    """LightRAG's doc_status storage for one workspace, one transaction per call."""

    def __init__(
        self,
        namespace: str = "doc_status",
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        if table_for_namespace(namespace) != TABLE:
            raise InvalidInput(
                f"DocStatusStore serves the doc_status namespace, not {namespace!r}: "
                "use KVStore or VectorStore for it."
            )
        super().__init__(namespace, workspace, manager)

    def ensure_tables(self) -> None:
        """Create LIGHTRAG_DOC_STATUS and LightRAG's indexes on it, unless it exists."""
        self.ensure_table(TABLE, _DDL)

    def _sql(self, template: str, **parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(table=self.table(TABLE), **parts)

    def _fetch(self, template: str, params: Any, **parts: sql.Composable) -> list[dict]:
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(template, **parts), params)
            return cur.fetchall()

    # -- KV basics -----------------------------------------------------------------

    def filter_keys(self, keys: set[str]) -> set[str]:
        """The keys that have no row. LightRAG type: set[str] as is."""
        if not keys:
            return set()
        found = self._fetch(_SELECT_IDS, (self.workspace, _read_ids(keys)))
        return set(keys) - {row["id"] for row in found}

    def get_by_id(self, id: str) -> dict[str, Any] | None:
        """The doc dict, or None. LightRAG type: the dict as is."""
        rows = self._fetch(_SELECT_DOCS_BY_IDS, (self.workspace, _read_ids([id])))
        return _doc(rows[0]) if rows else None

    def get_by_id_strict(self, id: str) -> dict[str, Any] | None:
        """As get_by_id; None is a confirmed absence (every error raises)."""
        return self.get_by_id(id)

    def get_by_ids(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """One doc dict or None per requested id, in request order. LightRAG: as is."""
        if not ids:
            return []
        wanted = _read_ids(ids)
        rows = self._fetch(_SELECT_DOCS_BY_IDS, (self.workspace, wanted))
        found = {row["id"]: _doc(row) for row in rows}
        return [found.get(i) for i in wanted]

    def is_empty(self) -> bool:
        """True when the workspace has no row. (LightRAG also answers True on an error.)"""
        return not self._fetch(_EXISTS, (self.workspace,))[0]["found"]

    def delete(self, ids: list[str]) -> None:
        """Delete these docs, all or none. (LightRAG logs and swallows an error here.)"""
        if not ids:
            return
        wanted = in_lock_order(_read_ids(ids))
        with self.cursor() as cur:
            for chunk in chunked(wanted, DEFAULT_CHUNK_SIZE):
                cur.execute(self._sql(_DELETE_IDS), (self.workspace, chunk))

    def drop(self) -> None:
        """Delete the workspace's rows."""
        with self.cursor() as cur:
            cur.execute(self._sql(_DELETE_WORKSPACE), (self.workspace,))

    def upsert(self, data: dict[str, dict[str, Any]]) -> None:
        """Insert or replace docs (LightRAG's fields; unknown keys are ignored).

        Every record is checked before anything is written: an invalid id, a missing
        required field (content_summary, content_length, status, file_path), a NUL
        character, unserializable JSON or an unparsable timestamp raises InvalidInput.
        """
        if not data:
            return
        rows = in_lock_order(
            (self._upsert_row(doc_id, doc) for doc_id, doc in data.items()), key=itemgetter(1)
        )
        with self.cursor() as cur:
            execute_values_chunked(cur, self._sql(_UPSERT), rows)

    def _upsert_row(self, doc_id: str, doc: Mapping[str, Any]) -> tuple[Any, ...]:
        check_key(doc_id, "doc_status id")
        where = f"doc_status {doc_id!r}"
        if not isinstance(doc, Mapping):
            raise InvalidInput(f"{where} must be a dict, got {type(doc).__name__}")
        missing = [f for f in _REQUIRED_FIELDS if f not in doc]
        if missing:
            raise InvalidInput(
                f"{where} lacks {', '.join(missing)}; LightRAG's DocProcessingStatus needs "
                f"{', '.join(_REQUIRED_FIELDS)}. Nothing was written."
            )
        fields = {
            "content_summary": doc["content_summary"],
            "content_length": doc["content_length"],
            "chunks_count": doc.get("chunks_count", -1),
            "status": _status_value(doc["status"]),
            "file_path": doc["file_path"],
            "chunks_list": doc.get("chunks_list", []),
            "track_id": doc.get("track_id"),
            "metadata": doc.get("metadata", {}),
            "error_msg": doc.get("error_msg"),
            "content_hash": doc.get("content_hash"),
        }
        # Every text column is checked here, the JSON ones by jsonb_text: no second walk.
        for column, sql_type in _CHECKED_COLUMNS.items():
            check_column(fields[column], sql_type, f"{where} {column}")
        fields["chunks_list"] = jsonb_text(fields["chunks_list"], f"{where} chunks_list")
        fields["metadata"] = jsonb_text(fields["metadata"], f"{where} metadata")
        fields["created_at"] = parse_timestamp(doc.get("created_at"), f"{where} created_at")
        fields["updated_at"] = parse_timestamp(doc.get("updated_at"), f"{where} updated_at")
        return (self.workspace, doc_id, *(fields[column] for column in _UPSERT_COLUMNS))

    # -- lookups -------------------------------------------------------------------

    def get_doc_by_file_path(self, file_path: str) -> dict[str, Any] | None:
        """The earliest doc with exactly this file_path, or None. LightRAG: as is."""
        check_storable(file_path, "file_path")
        rows = self._fetch(_SELECT_DOC_BY_FILE_PATH, (self.workspace, file_path))
        return _doc(rows[0]) if rows else None

    def get_doc_by_file_basename(self, basename: str) -> tuple[str, dict[str, Any]] | None:
        """(id, doc) of the earliest PRIMARY doc (metadata.is_duplicate not true) with this
        canonical basename, or None ("" and "unknown_source" never match). LightRAG: as is."""
        if not basename or basename == UNKNOWN_SOURCE:
            return None
        check_storable(basename, "basename")
        rows = self._fetch(_SELECT_PRIMARY_BY_FILE_PATH, (self.workspace, basename))
        return (rows[0]["id"], _doc(rows[0])) if rows else None

    def get_doc_by_content_hash(
        self, content_hash: str, *, exclude_doc_id: str | None = None
    ) -> tuple[str, dict[str, Any]] | None:
        """(id, doc) of the earliest doc by (created_at, id) with this content_hash, or None.

        ``exclude_doc_id`` skips that doc and any duplicate marker pointing at it
        (``is_duplicate`` with ``original_doc_id == exclude_doc_id``). LightRAG: as is.
        """
        if not content_hash:
            return None
        check_storable([content_hash, exclude_doc_id], "content_hash / exclude_doc_id")
        params = {"workspace": self.workspace, "hash": content_hash, "exclude": exclude_doc_id}
        exclude = sql.SQL(_EXCLUDE_DOC if exclude_doc_id is not None else "")
        rows = self._fetch(_SELECT_DOC_BY_CONTENT_HASH, params, exclude=exclude)
        return (rows[0]["id"], _doc(rows[0])) if rows else None

    def resolve_doc_source_strict(self, canonical_source_key: str) -> dict[str, Any]:
        """Primary candidates for a canonical source key, as one of:

        - ``{"kind": "absent"}``                                  -> SourceAbsent()
        - ``{"kind": "unique", "doc_id": id, "doc": record}``     -> SourceUnique(doc_id,
          DocSchedulingRecord(...record, status=DocStatus(...)))
        - ``{"kind": "conflict", "candidate_count": n, "sample_doc_ids": (id, id)}``
                                                                  -> SourceConflict(n, ids)
        """
        if not canonical_source_key or canonical_source_key == UNKNOWN_SOURCE:
            return {"kind": "absent"}
        check_storable(canonical_source_key, "canonical_source_key")
        params = (self.workspace, canonical_source_key)
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(_SELECT_PRIMARY_RECORDS), params)
            rows = cur.fetchall()
            count = len(rows)
            if count == 2:  # a conflict: the exact count is cheap on the same predicate
                cur.execute(self._sql(_COUNT_PRIMARY), params)
                count = int(cur.fetchone()["count"])
        if not rows:
            return {"kind": "absent"}
        if len(rows) == 1:
            return {"kind": "unique", "doc_id": rows[0]["id"], "doc": _record(rows[0], strict=True)}
        return {
            "kind": "conflict",
            "candidate_count": count,
            "sample_doc_ids": tuple(sorted(row["id"] for row in rows)),
        }

    # -- scheduling ----------------------------------------------------------------

    def get_docs_by_statuses_page(
        self,
        statuses: Sequence[Any],
        *,
        limit: int,
        position: str | None = None,
        strict: bool = False,
    ) -> tuple[dict[str, dict[str, Any]], str | None]:
        """One page of the keyset sweep over (created_at ASC NULLS FIRST, id ASC) across all
        ``statuses``: ``(records by id, next cursor or None at the end)``.

        ``position`` is None for CURSOR_START or LightRAG's opaque cursor string; the
        facade answers CURSOR_END itself (an empty page that ends). A short page ends the
        sweep; a row that cannot be a record raises when ``strict``, else is skipped but
        consumed. LightRAG: DocStatusPage(docs={id: DocSchedulingRecord(...)},
        next_position=CURSOR_END if cursor is None else CursorAfter(cursor)).
        """
        if not isinstance(limit, int) or limit <= 0:
            raise InvalidInput(f"page limit must be a positive integer, got {limit!r}")
        if position is not None and not isinstance(position, str):
            raise InvalidInput(
                "position must be None (start) or the opaque cursor string of a previous "
                f"page (CursorAfter.opaque), got {type(position).__name__}"
            )
        wanted = _status_list(statuses)
        if not wanted:
            return {}, None
        params: dict[str, Any] = {
            "statuses": wanted,
            "workspace": self.workspace,
            "limit": limit,
        }
        after = ""
        if position is not None:
            params["after_created"], params["after_id"] = decode_cursor(position)
            after = _AFTER_KEY if params["after_created"] is not None else _AFTER_NULL_BUCKET
        rows = self._fetch(_SELECT_PAGE, params, after=sql.SQL(after))
        docs = _records(rows, strict=strict)
        if len(rows) < limit:
            return docs, None
        return docs, encode_cursor(rows[-1]["created_at"], rows[-1]["id"])

    def get_docs_by_ids(
        self, doc_ids: Sequence[str], *, strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Scheduling records of the ids that exist (absent ids are left out).
        LightRAG: {id: DocSchedulingRecord(...record, status=DocStatus(record["status"]))}.
        """
        ids = _read_ids(doc_ids)
        if not ids:
            return {}
        return _records(self._fetch(_SELECT_RECORDS_BY_IDS, (self.workspace, ids)), strict=strict)

    def get_full_docs_by_ids(
        self, doc_ids: Sequence[str], *, strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Full doc_status docs of the ids that exist. LightRAG (which also reads
        LIGHTRAG_DOC_STATUS here): {id: DocProcessingStatus(**doc)}. ``strict`` changes
        nothing: every stored row converts."""
        ids = _read_ids(doc_ids)
        if not ids:
            return {}
        rows = self._fetch(_SELECT_DOCS_BY_IDS, (self.workspace, ids))
        return {row["id"]: _status_doc(row) for row in rows}

    def get_docs_by_statuses(
        self, statuses: Sequence[Any], strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Every doc in any of ``statuses``. LightRAG: {id: DocProcessingStatus(**doc)}."""
        wanted = _status_list(statuses)
        if not wanted:
            return {}
        rows = self._fetch(_SELECT_DOCS_BY_STATUSES, (self.workspace, wanted))
        return {row["id"]: _status_doc(row) for row in rows}

    def get_docs_by_track_id(self, track_id: str) -> dict[str, dict[str, Any]]:
        """Every doc of a track id. LightRAG: {id: DocProcessingStatus(**doc)}."""
        check_storable(track_id, "track_id")
        rows = self._fetch(_SELECT_DOCS_BY_TRACK_ID, (self.workspace, track_id))
        return {row["id"]: _status_doc(row) for row in rows}

    def count_docs_by_statuses(self, statuses: Sequence[Any], *, strict: bool = True) -> int:
        """Exact number of docs in any of ``statuses``; errors raise. LightRAG: int as is."""
        wanted = _status_list(statuses)
        if not wanted:
            return 0
        return int(self._fetch(_COUNT_BY_STATUSES, (self.workspace, wanted))[0]["count"])

    def get_status_counts(self) -> dict[str, int]:
        """{status: count} of the workspace. LightRAG: as is."""
        rows = self._fetch(_COUNT_BY_STATUS, (self.workspace,))
        return {row["status"]: row["count"] for row in rows}

    def get_all_status_counts(self) -> dict[str, int]:
        """{status: count, ..., "all": total}. LightRAG: as is."""
        counts = self.get_status_counts()
        return {**counts, "all": sum(counts.values())}

    def update_doc_status_fields(
        self, doc_id: str, fields: dict[str, Any], *, missing_ok: bool = False
    ) -> None:
        """Write only ``fields`` of one doc (JSON and timestamps as upsert writes them).

        created_at (the immutable sweep key) and columns outside UPDATABLE_COLUMNS raise
        InvalidInput (a ValueError, as LightRAG raises). An unknown doc raises
        DocStatusNotFound (LightRAG: StorageRecordNotFoundError) unless ``missing_ok``.
        """
        if "created_at" in fields:
            raise InvalidInput(
                "created_at is an immutable scheduling sort key and cannot be changed via "
                "update_doc_status_fields"
            )
        unknown = set(fields) - UPDATABLE_COLUMNS
        if unknown:
            raise InvalidInput(
                f"update_doc_status_fields received unknown doc_status column(s) "
                f"{sorted(map(str, unknown))}; allowed: {sorted(UPDATABLE_COLUMNS)}"
            )
        where = f"doc_status {doc_id!r}"
        check_storable([doc_id, fields], where)
        values = [self._column_value(column, value, where) for column, value in fields.items()]
        with self.cursor() as cur:
            if fields:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(column)) for column in fields
                )
                cur.execute(
                    self._sql(_UPDATE_FIELDS, assignments=assignments),
                    (*values, self.workspace, doc_id),
                )
            else:  # nothing to write; the existence contract still holds
                cur.execute(self._sql(_SELECT_IDS), (self.workspace, [doc_id]))
            found = cur.fetchone() is not None
        if not found and not missing_ok:
            raise DocStatusNotFound(
                f"no doc_status row {doc_id!r} in workspace {self.workspace!r} to update; "
                "pass missing_ok=True if a concurrent delete is acceptable."
            )

    @staticmethod
    def _column_value(column: str, value: Any, where: str) -> Any:
        if column in _JSON_COLUMNS:
            return value if isinstance(value, str) else jsonb_text(value, f"{where} {column}")
        if column in _TIMESTAMP_COLUMNS:
            return parse_timestamp(value, f"{where} {column}")
        return _status_value(value)

    # -- listing -------------------------------------------------------------------

    def get_docs_paginated(
        self,
        status_filter: Any = None,
        status_filters: Sequence[Any] | None = None,
        page: int = 1,
        page_size: int = 50,
        sort_field: str = "updated_at",
        sort_direction: str = "desc",
    ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """One page of docs and the total count of matching docs.

        ``status_filters`` (if non-empty) wins over ``status_filter``; neither means all.
        ``page`` < 1 reads as 1, ``page_size`` is clamped to 10..200; sort_field is one of
        SORT_FIELDS and sort_direction asc/desc (any case), with NULLs last and id breaking
        ties. Docs carry an empty chunks_list. LightRAG:
        ([(id, DocProcessingStatus(**doc)) for id, doc in docs], total).
        """
        if sort_field not in SORT_FIELDS:
            raise InvalidInput(f"sort_field {sort_field!r} is not one of {', '.join(SORT_FIELDS)}")
        direction = str(sort_direction).lower()
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"sort_direction {sort_direction!r} is not 'asc' or 'desc'")
        if status_filters:
            statuses: list[str] | None = sorted(_status_list(status_filters))
        elif status_filter is not None:
            statuses = _status_list([status_filter])
        else:
            statuses = None
        page = max(page, 1)
        page_size = min(max(page_size, 10), 200)

        key, tie, way = sql.Identifier(sort_field), sql.Identifier("id"), sql.SQL(direction)
        order = sql.SQL("{} {} NULLS LAST, {} {}").format(key, way, tie, way)
        outer = sql.SQL("p.{} {} NULLS LAST, p.{} {}").format(key, way, tie, way)
        params = {
            "workspace": self.workspace,
            "statuses": statuses,
            "limit": page_size,
            "offset": (page - 1) * page_size,
        }
        rows = self._fetch(_SELECT_PAGINATED, params, order=order, outer_order=outer)
        docs = [
            (row["id"], {**_doc(row), "chunks_list": []}) for row in rows if row["id"] is not None
        ]
        return docs, rows[0]["total"]

    # -- source conflicts ----------------------------------------------------------

    def list_source_conflicts_page(
        self, *, limit: int, position: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Canonical source keys with two or more primary candidates, ordered by key:
        ``(summaries, next cursor or None at the end)``; a summary is
        {"canonical_source_key", "candidate_count", "sample_doc_ids": (≤32 ids by id)}.

        ``position`` as in get_docs_by_statuses_page. LightRAG: SourceConflictPage(
        conflicts=tuple(SourceConflictSummary(**s) for s in summaries), next_position=...).
        """
        if not isinstance(limit, int) or limit <= 0:
            raise InvalidInput(f"page limit must be a positive integer, got {limit!r}")
        if position is not None and not isinstance(position, str):
            raise InvalidInput("position must be None or a previous page's cursor string")
        params = {
            "workspace": self.workspace,
            "after": _decode_conflict_cursor(position) if position is not None else None,
            "limit": limit,
            "cap": CONFLICT_SAMPLE_CAP,
        }
        rows = self._fetch(_SELECT_CONFLICTS, params)
        conflicts = [
            {
                "canonical_source_key": row["file_path"],
                "candidate_count": int(row["count"]),
                "sample_doc_ids": tuple(row["sample"]),
            }
            for row in rows
        ]
        if len(rows) < limit:
            return conflicts, None
        return conflicts, json.dumps(rows[-1]["file_path"], ensure_ascii=False)

    def repair_source_conflict(
        self,
        canonical_source_key: str,
        *,
        primary_doc_id: str,
        expected_candidate_count: int,
        expected_candidate_fingerprint: str,
        dry_run: bool = True,
    ) -> dict[str, Any]:
        """Keep ``primary_doc_id`` and mark every other primary candidate of the key
        ``metadata.is_duplicate=true, original_doc_id=primary_doc_id`` (content stays).

        The candidates are read FOR UPDATE; a dry run changes nothing. A commit whose
        expected count/fingerprint no longer match raises SourceConflictChanged (LightRAG:
        SourceConflictRepairCASError); a primary_doc_id that is not a candidate raises
        InvalidInput (a ValueError, as LightRAG). Returns the fields of
        SourceConflictRepairResult: LightRAG: SourceConflictRepairResult(**result).
        """
        check_storable([canonical_source_key, primary_doc_id], "canonical_source_key / primary")
        with self.cursor() as cur:
            cur.execute(self._sql(_LOCK_PRIMARY_IDS), (self.workspace, canonical_source_key))
            candidates = sorted(row["id"] for row in cur.fetchall())
            fingerprint = conflict_fingerprint(candidates)
            if primary_doc_id not in candidates:
                raise InvalidInput(
                    f"primary_doc_id {primary_doc_id!r} is not a current primary candidate "
                    f"for {canonical_source_key!r}; re-read the candidates (dry run) first."
                )
            demoted = [d for d in candidates if d != primary_doc_id]
            if not dry_run:
                if (len(candidates), fingerprint) != (
                    expected_candidate_count,
                    expected_candidate_fingerprint,
                ):
                    raise SourceConflictChanged(
                        f"source-conflict repair of {canonical_source_key!r} refused: the "
                        f"candidates changed (count {len(candidates)}, expected "
                        f"{expected_candidate_count}); run a fresh dry run and retry."
                    )
                if demoted:
                    cur.execute(self._sql(_DEMOTE), (primary_doc_id, self.workspace, demoted))
        return {
            "canonical_source_key": canonical_source_key,
            "primary_doc_id": primary_doc_id,
            "candidate_count": len(candidates),
            "fingerprint": fingerprint,
            "demoted_sample_doc_ids": tuple(demoted[:CONFLICT_SAMPLE_CAP]),
            "committed": not dry_run,
        }
