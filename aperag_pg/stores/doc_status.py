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

The SQL lives in ``doc_status_sql``, the row and value conversion in ``doc_status_rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from psycopg2 import sql

from ..batching import DEFAULT_CHUNK_SIZE, chunked, execute_values_chunked, in_lock_order
from ..cursors import Mode
from ..errors import DocStatusNotFound, InvalidInput, SourceConflictChanged
from ..manager import PostgreSQLSyncConnectionManager
from ..values import check_column, check_storable, jsonb_text
from . import doc_status_sql as q
from .base import TableStore, check_key, table_for_namespace
from .doc_status_rows import (
    column_value,
    conflict_fingerprint,
    decode_conflict_cursor,
    decode_cursor,
    doc_from_row,
    encode_conflict_cursor,
    encode_cursor,
    parse_timestamp,
    read_ids,
    record_from_row,
    records_from_rows,
    status_doc_from_row,
    status_list,
    status_value,
)

CONFLICT_SAMPLE_CAP = 32  # PGDocStatusStorage._CONFLICT_SAMPLE_CAP
UNKNOWN_SOURCE = "unknown_source"

SORT_FIELDS = ("created_at", "updated_at", "id", "file_path")  # get_docs_paginated
_REQUIRED_FIELDS = ("content_summary", "content_length", "status", "file_path")
# Columns update_doc_status_fields may write; created_at is the immutable sweep key.
UPDATABLE_COLUMNS = frozenset(q.UPSERT_COLUMNS) - {"created_at"}


class DocStatusStore(TableStore):
    """LightRAG's doc_status storage for one workspace, one transaction per call."""

    def __init__(
        self,
        namespace: str = "doc_status",
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        if table_for_namespace(namespace) != q.TABLE:
            raise InvalidInput(
                f"DocStatusStore serves the doc_status namespace, not {namespace!r}: "
                "use KVStore or VectorStore for it."
            )
        super().__init__(namespace, workspace, manager)

    def ensure_tables(self) -> None:
        """Create LIGHTRAG_DOC_STATUS and LightRAG's indexes on it, unless it exists."""
        self.ensure_table(q.TABLE, q.DDL)

    def _sql(self, template: str, **parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(table=self.table(q.TABLE), **parts)

    def _fetch(self, template: str, params: Any, **parts: sql.Composable) -> list[dict]:
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(template, **parts), params)
            return cur.fetchall()

    # -- KV basics -----------------------------------------------------------------

    def filter_keys(self, keys: set[str]) -> set[str]:
        """The keys that have no row. LightRAG type: set[str] as is."""
        if not keys:
            return set()
        found = self._fetch(q.SELECT_IDS, (self.workspace, read_ids(keys)))
        return set(keys) - {row["id"] for row in found}

    def get_by_id(self, id: str) -> dict[str, Any] | None:
        """The doc dict, or None. LightRAG type: the dict as is."""
        rows = self._fetch(q.SELECT_DOCS_BY_IDS, (self.workspace, read_ids([id])))
        return doc_from_row(rows[0]) if rows else None

    def get_by_id_strict(self, id: str) -> dict[str, Any] | None:
        """As get_by_id; None is a confirmed absence (every error raises)."""
        return self.get_by_id(id)

    def get_by_ids(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """One doc dict or None per requested id, in request order. LightRAG: as is."""
        if not ids:
            return []
        wanted = read_ids(ids)
        rows = self._fetch(q.SELECT_DOCS_BY_IDS, (self.workspace, wanted))
        found = {row["id"]: doc_from_row(row) for row in rows}
        return [found.get(i) for i in wanted]

    def is_empty(self) -> bool:
        """True when the workspace has no row. (LightRAG also answers True on an error.)"""
        return not self._fetch(q.EXISTS, (self.workspace,))[0]["found"]

    def delete(self, ids: list[str]) -> None:
        """Delete these docs, all or none. (LightRAG logs and swallows an error here.)"""
        if not ids:
            return
        wanted = in_lock_order(read_ids(ids))
        with self.cursor(Mode.writes(one_statement=len(wanted) <= DEFAULT_CHUNK_SIZE)) as cur:
            for chunk in chunked(wanted, DEFAULT_CHUNK_SIZE):
                cur.execute(self._sql(q.DELETE_IDS), (self.workspace, chunk))

    def drop(self) -> None:
        """Delete the workspace's rows."""
        with self.cursor(Mode.WRITE) as cur:
            cur.execute(self._sql(q.DELETE_WORKSPACE), (self.workspace,))

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
        with self.cursor(Mode.writes(one_statement=len(rows) <= DEFAULT_CHUNK_SIZE)) as cur:
            execute_values_chunked(cur, self._sql(q.UPSERT), rows)

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
            "status": status_value(doc["status"]),
            "file_path": doc["file_path"],
            "chunks_list": doc.get("chunks_list", []),
            "track_id": doc.get("track_id"),
            "metadata": doc.get("metadata", {}),
            "error_msg": doc.get("error_msg"),
            "content_hash": doc.get("content_hash"),
        }
        # Every text column is checked here, the JSON ones by jsonb_text: no second walk.
        for column, sql_type in q.CHECKED_COLUMNS.items():
            check_column(fields[column], sql_type, f"{where} {column}")
        fields["chunks_list"] = jsonb_text(fields["chunks_list"], f"{where} chunks_list")
        fields["metadata"] = jsonb_text(fields["metadata"], f"{where} metadata")
        fields["created_at"] = parse_timestamp(doc.get("created_at"), f"{where} created_at")
        fields["updated_at"] = parse_timestamp(doc.get("updated_at"), f"{where} updated_at")
        return (self.workspace, doc_id, *(fields[column] for column in q.UPSERT_COLUMNS))

    # -- lookups -------------------------------------------------------------------

    def get_doc_by_file_path(self, file_path: str) -> dict[str, Any] | None:
        """The earliest doc with exactly this file_path, or None. LightRAG: as is."""
        check_storable(file_path, "file_path")
        rows = self._fetch(q.SELECT_DOC_BY_FILE_PATH, (self.workspace, file_path))
        return doc_from_row(rows[0]) if rows else None

    def get_doc_by_file_basename(self, basename: str) -> tuple[str, dict[str, Any]] | None:
        """(id, doc) of the earliest PRIMARY doc (metadata.is_duplicate not true) with this
        canonical basename, or None ("" and "unknown_source" never match). LightRAG: as is."""
        if not basename or basename == UNKNOWN_SOURCE:
            return None
        check_storable(basename, "basename")
        rows = self._fetch(q.SELECT_PRIMARY_BY_FILE_PATH, (self.workspace, basename))
        return (rows[0]["id"], doc_from_row(rows[0])) if rows else None

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
        exclude = sql.SQL(q.EXCLUDE_DOC if exclude_doc_id is not None else "")
        rows = self._fetch(q.SELECT_DOC_BY_CONTENT_HASH, params, exclude=exclude)
        return (rows[0]["id"], doc_from_row(rows[0])) if rows else None

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
            cur.execute(self._sql(q.SELECT_PRIMARY_RECORDS), params)
            rows = cur.fetchall()
            count = len(rows)
            if count == 2:  # a conflict: the exact count is cheap on the same predicate
                cur.execute(self._sql(q.COUNT_PRIMARY), params)
                count = int(cur.fetchone()["count"])
        if not rows:
            return {"kind": "absent"}
        if len(rows) == 1:
            return {
                "kind": "unique",
                "doc_id": rows[0]["id"],
                "doc": record_from_row(rows[0], strict=True),
            }
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
        wanted = status_list(statuses)
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
            after = q.AFTER_KEY if params["after_created"] is not None else q.AFTER_NULL_BUCKET
        rows = self._fetch(q.SELECT_PAGE, params, after=sql.SQL(after))
        docs = records_from_rows(rows, strict=strict)
        if len(rows) < limit:
            return docs, None
        return docs, encode_cursor(rows[-1]["created_at"], rows[-1]["id"])

    def get_docs_by_ids(
        self, doc_ids: Sequence[str], *, strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Scheduling records of the ids that exist (absent ids are left out).
        LightRAG: {id: DocSchedulingRecord(...record, status=DocStatus(record["status"]))}.
        """
        ids = read_ids(doc_ids)
        if not ids:
            return {}
        return records_from_rows(
            self._fetch(q.SELECT_RECORDS_BY_IDS, (self.workspace, ids)), strict=strict
        )

    def get_full_docs_by_ids(
        self, doc_ids: Sequence[str], *, strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Full doc_status docs of the ids that exist. LightRAG (which also reads
        LIGHTRAG_DOC_STATUS here): {id: DocProcessingStatus(**doc)}. ``strict`` changes
        nothing: every stored row converts."""
        ids = read_ids(doc_ids)
        if not ids:
            return {}
        rows = self._fetch(q.SELECT_DOCS_BY_IDS, (self.workspace, ids))
        return {row["id"]: status_doc_from_row(row) for row in rows}

    def get_docs_by_statuses(
        self, statuses: Sequence[Any], strict: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Every doc in any of ``statuses``. LightRAG: {id: DocProcessingStatus(**doc)}."""
        wanted = status_list(statuses)
        if not wanted:
            return {}
        rows = self._fetch(q.SELECT_DOCS_BY_STATUSES, (self.workspace, wanted))
        return {row["id"]: status_doc_from_row(row) for row in rows}

    def get_docs_by_track_id(self, track_id: str) -> dict[str, dict[str, Any]]:
        """Every doc of a track id. LightRAG: {id: DocProcessingStatus(**doc)}."""
        check_storable(track_id, "track_id")
        rows = self._fetch(q.SELECT_DOCS_BY_TRACK_ID, (self.workspace, track_id))
        return {row["id"]: status_doc_from_row(row) for row in rows}

    def count_docs_by_statuses(self, statuses: Sequence[Any], *, strict: bool = True) -> int:
        """Exact number of docs in any of ``statuses``; errors raise. LightRAG: int as is."""
        wanted = status_list(statuses)
        if not wanted:
            return 0
        return int(self._fetch(q.COUNT_BY_STATUSES, (self.workspace, wanted))[0]["count"])

    def get_status_counts(self) -> dict[str, int]:
        """{status: count} of the workspace. LightRAG: as is."""
        rows = self._fetch(q.COUNT_BY_STATUS, (self.workspace,))
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
        values = [column_value(column, value, where) for column, value in fields.items()]
        with self.cursor() as cur:
            if fields:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(column)) for column in fields
                )
                cur.execute(
                    self._sql(q.UPDATE_FIELDS, assignments=assignments),
                    (*values, self.workspace, doc_id),
                )
            else:  # nothing to write; the existence contract still holds
                cur.execute(self._sql(q.SELECT_IDS), (self.workspace, [doc_id]))
            found = cur.fetchone() is not None
        if not found and not missing_ok:
            raise DocStatusNotFound(
                f"no doc_status row {doc_id!r} in workspace {self.workspace!r} to update; "
                "pass missing_ok=True if a concurrent delete is acceptable."
            )

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
            statuses: list[str] | None = sorted(status_list(status_filters))
        elif status_filter is not None:
            statuses = status_list([status_filter])
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
        rows = self._fetch(q.SELECT_PAGINATED, params, order=order, outer_order=outer)
        docs = [
            (row["id"], {**doc_from_row(row), "chunks_list": []})
            for row in rows
            if row["id"] is not None
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
            "after": decode_conflict_cursor(position) if position is not None else None,
            "limit": limit,
            "cap": CONFLICT_SAMPLE_CAP,
        }
        rows = self._fetch(q.SELECT_CONFLICTS, params)
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
        return conflicts, encode_conflict_cursor(rows[-1]["file_path"])

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
            cur.execute(self._sql(q.LOCK_PRIMARY_IDS), (self.workspace, canonical_source_key))
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
                    cur.execute(self._sql(q.DEMOTE), (primary_doc_id, self.workspace, demoted))
        return {
            "canonical_source_key": canonical_source_key,
            "primary_doc_id": primary_doc_id,
            "candidate_count": len(candidates),
            "fingerprint": fingerprint,
            "demoted_sample_doc_ids": tuple(demoted[:CONFLICT_SAMPLE_CAP]),
            "committed": not dry_run,
        }
