"""The sync pgvector store: LightRAG's ``LIGHTRAG_VDB_*`` tables, written and searched
from worker threads.

Tables, columns, primary keys, row shapes and query semantics are those of lightrag-hku
1.5.7's ``PGVectorStorage`` (``kg/postgres_impl.py``), so either can read what the
other wrote:

- one table per namespace and embedding model, e.g.
  ``LIGHTRAG_VDB_CHUNKS_text_embedding_3_large_3072d`` (created unquoted, so lower case);
- ``query()`` keeps rows whose cosine distance ``content_vector <=> q`` is strictly below
  ``1 - cosine_better_than_threshold``, nearest first, at most ``top_k``, and returns
  LightRAG's select list (``created_at`` as epoch seconds, no distance);
- the vector index is ``idx_<table>_<type>_cosine`` (hashed when longer than 63 bytes).

This store writes at once, one transaction per call. LightRAG 1.5.7's buffering of
upserts and deletes until ``index_done_callback()`` lives in the facade
(``lightrag/storages.py``, PGSyncVectorStorage), which embeds and then calls this store.
The caller computes the embeddings and passes each under ``"__vector__"``.

Vectors never go through per-float Python formatting: upserts send whole rows by binary
COPY (``binary_copy``), a query binds its vector once as exact hexadecimal-float text
built by numpy (``pgvector.vector_literal``). Stored vectors are read back through the ``pgvector``
package's casters, registered once per connection. pgvector itself (its type and
operators) is looked up through ``search_path``, as in LightRAG's DDL and queries.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg2
import psycopg2.errors
from pgvector.psycopg2 import register_vector
from psycopg2 import sql

from .. import locks
from ..batching import chunked, in_lock_order
from ..cursors import Mode
from ..errors import (
    ExtensionMissing,
    InvalidInput,
    TransientFailure,
    VectorDimensionMismatch,
)
from ..manager import PostgreSQLSyncConnectionManager
from ..pgvector import ensure_pgvector, vector_literal, vector_values
from ..schema import table_exists
from ..values import check_column, check_storable
from .base import TableStore, check_key, table_for_namespace, utc_now
from .binary_copy import copy_out, field_encoder, read_rows, table_rows
from .vector_tables import (
    MAX_DIMENSION,
    check_dimension,
    check_table_name,
    ensure_vector_index,
    ensure_vector_table,
)

logger = logging.getLogger(__name__)

GRAPH_FIELD_SEP = "<SEP>"  # LightRAG's separator of chunk ids in source_id
_READ_CHUNK = 1000  # ids per statement in deletes and lookups
_WRITE_CHUNK = 1000  # rows per delete and COPY of an upsert (one transaction for all)

# A checked row of an upsert: (id, the values of its kind's written columns, float32 vector).
_Row = tuple[str, tuple[Any, ...], np.ndarray]

# Connections whose pgvector type casters are registered (one catalog query each).
_registered_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def compute_mdhash_id(content: str, prefix: str = "") -> str:
    """LightRAG's id of a string: ``prefix`` + md5 hex of its UTF-8 bytes."""
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, replaced as LightRAG does
        data = content.encode("utf-8", errors="replace")
    return prefix + hashlib.md5(data).hexdigest()


# -- the three namespaces ------------------------------------------------------------


def _field(item: Mapping[str, Any], key: str, name: str, required: bool = True) -> Any:
    """``item[name]``; missing and required -> InvalidInput. (Its column checks it.)"""
    if name not in item:
        if required:
            raise InvalidInput(
                f"vector row {key!r:.80} has no {name!r} field, which LightRAG's rows always "
                "carry; nothing was written."
            )
        return None
    return item[name]


def _chunk_ids(item: Mapping[str, Any], key: str) -> list[Any]:
    """LightRAG's chunk_ids: source_id split on <SEP>, or a one-element list."""
    source_id = _field(item, key, "source_id")
    if isinstance(source_id, str) and GRAPH_FIELD_SEP in source_id:
        return source_id.split(GRAPH_FIELD_SEP)
    return [source_id]


def _chunk_values(item: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    return tuple(
        _field(item, key, name)
        for name in ("tokens", "chunk_order_index", "full_doc_id", "content", "file_path")
    )


def _entity_values(item: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    return (
        _field(item, key, "entity_name"),
        _field(item, key, "content"),
        _chunk_ids(item, key),
        _field(item, key, "file_path", required=False),
    )


def _relation_values(item: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    return (
        _field(item, key, "src_id"),
        _field(item, key, "tgt_id"),
        _field(item, key, "content"),
        _chunk_ids(item, key),
        _field(item, key, "file_path", required=False),
    )


_TIMESTAMP = "TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP"
# LightRAG's field names where they differ from the column's, for messages.
_FIELD_OF_COLUMN = {"source_id": "src_id", "target_id": "tgt_id", "chunk_ids": "source_id"}


@dataclass(frozen=True)
class _Kind:
    """What differs between LightRAG's three vector tables."""

    columns: tuple[tuple[str, str], ...]  # LightRAG's DDL, in table order
    written: tuple[str, ...]  # columns filled from a row besides workspace, id, vector, times
    build: Callable[[Mapping[str, Any], str], tuple[Any, ...]]  # row -> values of `written`
    select: str  # LightRAG's select list of query(), before created_at

    @property
    def stored(self) -> tuple[str, ...]:
        """What get_by_id returns: every column but the vector (LightRAG drops it too)."""
        return tuple(name for name, _ in self.columns if name != "content_vector")


_KINDS: dict[str, _Kind] = {
    "LIGHTRAG_VDB_CHUNKS": _Kind(
        columns=(
            ("id", "VARCHAR(255)"),
            ("workspace", "VARCHAR(255)"),
            ("full_doc_id", "VARCHAR(256)"),
            ("chunk_order_index", "INTEGER"),
            ("tokens", "INTEGER"),
            ("content", "TEXT"),
            ("content_vector", "VECTOR(dimension)"),
            ("file_path", "TEXT NULL"),
            ("create_time", _TIMESTAMP),
            ("update_time", _TIMESTAMP),
        ),
        written=("tokens", "chunk_order_index", "full_doc_id", "content", "file_path"),
        build=_chunk_values,
        select="id, content, file_path",
    ),
    "LIGHTRAG_VDB_ENTITY": _Kind(
        columns=(
            ("id", "VARCHAR(255)"),
            ("workspace", "VARCHAR(255)"),
            ("entity_name", "VARCHAR(512)"),
            ("content", "TEXT"),
            ("content_vector", "VECTOR(dimension)"),
            ("create_time", _TIMESTAMP),
            ("update_time", _TIMESTAMP),
            ("chunk_ids", "VARCHAR(255)[] NULL"),
            ("file_path", "TEXT NULL"),
        ),
        written=("entity_name", "content", "chunk_ids", "file_path"),
        build=_entity_values,
        select="entity_name",
    ),
    "LIGHTRAG_VDB_RELATION": _Kind(
        columns=(
            ("id", "VARCHAR(255)"),
            ("workspace", "VARCHAR(255)"),
            ("source_id", "VARCHAR(512)"),
            ("target_id", "VARCHAR(512)"),
            ("content", "TEXT"),
            ("content_vector", "VECTOR(dimension)"),
            ("create_time", _TIMESTAMP),
            ("update_time", _TIMESTAMP),
            ("chunk_ids", "VARCHAR(255)[] NULL"),
            ("file_path", "TEXT NULL"),
        ),
        written=("source_id", "target_id", "content", "chunk_ids", "file_path"),
        build=_relation_values,
        select="source_id AS src_id, target_id AS tgt_id",
    ),
}

# -- SQL ------------------------------------------------------------------------------

# The query vector is bound once (formatting 1,536 floats as text is the costly part of a
# query) and read through a scalar subquery, which the planner computes once (an InitPlan):
# the HNSW index still orders by it, and the plan is LightRAG's own, ties included.
_QUERY = """
WITH query (v) AS (SELECT %s::vector)
SELECT {select}, EXTRACT(EPOCH FROM create_time)::BIGINT AS created_at
FROM {table}
WHERE workspace = %s AND content_vector <=> (SELECT v FROM query) < %s
ORDER BY content_vector <=> (SELECT v FROM query)
LIMIT %s
"""
# Sent with the query in one round trip; a multi-statement query string is one implicit
# transaction, so a local setting holds for the query alone (also in autocommit,
# PgBouncer-safe). set_config(..., true) is SET LOCAL with the value as a parameter.
_EF_SEARCH = "SELECT set_config('hnsw.ef_search', %s, true); "
# pgvector 0.8's iterative index scan: the scan goes on past rows the WHERE drops (other
# workspaces, the threshold) until LIMIT is met or hnsw.max_scan_tuples are read, in exact
# distance order; without it a workspace that is a small part of the table gets fewer rows
# than top_k, and never more than ef_search.
_ITERATIVE_SCAN = "SET LOCAL hnsw.iterative_scan = strict_order; "
PGVECTOR_EF_SEARCH = 40  # pgvector's default: an HNSW scan returns at most this many rows
MAX_EF_SEARCH = 1000  # pgvector's limit
_SELECT_BY_IDS = """
SELECT {columns}, EXTRACT(EPOCH FROM create_time)::BIGINT AS created_at
FROM {table} WHERE workspace = %s AND id = ANY(%s)
"""
# Every delete (an upsert's too) locks its rows in one order, the ids' code points (as
# batching.in_lock_order sorts; "C" whatever the database's collation), so writers of
# overlapping rows wait for each other instead of deadlocking. {rows}: which rows.
_DELETE_LOCKED = """
WITH doomed AS (
    SELECT ctid FROM {table} WHERE workspace = %s AND {rows}
    ORDER BY id COLLATE "C" FOR UPDATE
)
DELETE FROM {table} t USING doomed WHERE t.ctid = doomed.ctid
"""
_BY_IDS = "id = ANY(%s)"
_BY_ENTITY = "(entity_name = %s OR id = %s)"
_BY_RELATION = "(source_id = %s OR target_id = %s)"
_WHOLE_WORKSPACE = "TRUE"
_RETURNING_CREATE_TIME = "RETURNING t.id, t.create_time"  # an upsert keeps create_time
# Upserts of the same id take turns: before its first delete, an upsert takes a
# transaction-level advisory lock per id (locks.VECTOR_ROW; keys sorted, so two upserts
# never wait for each other both ways). The delete is a statement of its own after it,
# so under READ COMMITTED its snapshot sees the rows a rival committed while this one
# waited, and replaces them; the COPY then meets no rival's row. unnest keeps the order.
_ROW_LOCKS = "SELECT pg_advisory_xact_lock(%s, key) FROM unnest(%s::integer[]) AS key; "
_COPY_ROWS = "COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
# Only a writer that takes no row locks (LightRAG's own PGVectorStorage, an older
# aperag_pg) can still commit one of the ids between the delete and the COPY: then the
# upsert starts over from here, its locks kept.
_SAVEPOINT = "SAVEPOINT aperag_upsert; "
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT aperag_upsert"
_REPLACE_ATTEMPTS = 5
# Stored vectors as their float4 bytes, by COPY BINARY (psycopg2 reads SELECT results only
# as text: 1,536 decimal floats a row parsed in Python cost ~16 ms per LightRAG local query;
# vector_send's bytea comes as hex, twice the bytes, encoded and decoded on both ends).
_COPY_VECTORS = (
    "COPY (SELECT id, content_vector FROM {table} WHERE workspace = %s AND id = ANY(%s)) "
    "TO STDOUT (FORMAT binary)"
)


def _register_vector(conn: Any) -> None:
    """Register pgvector's adapter and casters on ``conn``, once per connection."""
    if conn in _registered_connections:
        return
    try:
        register_vector(conn)
    except psycopg2.ProgrammingError as exc:
        if "vector type not found" not in str(exc):
            raise
        raise ExtensionMissing(
            "the pgvector extension is not enabled in this database: call "
            "VectorStore.ensure_tables() first, or have a superuser run CREATE EXTENSION vector."
        ) from exc
    _registered_connections.add(conn)


class VectorStore(TableStore):
    """One LightRAG vector namespace (chunks, entities or relationships) in one workspace.

    ``table_name`` is LightRAG's full table name with the embedding-model suffix, e.g.
    ``LIGHTRAG_VDB_CHUNKS_text_embedding_3_large_3072d``. Call :meth:`ensure_tables`
    once before use.
    """

    def __init__(
        self,
        namespace: str,
        table_name: str,
        embedding_dim: int,
        cosine_better_than_threshold: float,
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        base_table = table_for_namespace(namespace) if isinstance(namespace, str) else None
        if base_table not in _KINDS:
            raise InvalidInput(
                f"VectorStore serves LightRAG's vector namespaces chunks, entities and "
                f"relationships, not {namespace!r}."
            )
        check_table_name(table_name, base_table)
        if type(embedding_dim) is not int or not 1 <= embedding_dim <= MAX_DIMENSION:
            raise InvalidInput(
                f"embedding_dim must be a whole number from 1 to {MAX_DIMENSION} "
                f"(pgvector's limit), got {embedding_dim!r}."
            )
        super().__init__(namespace, workspace, manager)
        self.kind = _KINDS[base_table]
        self.base_table = base_table.lower()  # LightRAG's legacy table without the suffix
        self.table_name = table_name.lower()  # the physical name LightRAG's DDL creates
        self.embedding_dim = embedding_dim
        self.cosine_better_than_threshold = _check_threshold(cosine_better_than_threshold)
        self._delete_stored_sql = self._delete_sql(_BY_IDS, _RETURNING_CREATE_TIME)
        self._first_delete_sql = sql.SQL(_ROW_LOCKS + _SAVEPOINT) + self._delete_stored_sql
        # every id's lock key starts from this row identity (NUL never occurs in its parts)
        self._lock_prefix = hashlib.blake2b(
            "\0".join((self.schema, self.table_name, self.workspace, "")).encode(), digest_size=4
        )
        self._copy_sql, self._copy_encoders = self._copy_statement()
        self._iterative_scans = False  # pgvector 0.8+, known after ensure_tables()
        types = dict(self.kind.columns)  # (LightRAG's field name, the column's SQL type)
        self._written_types = [(_FIELD_OF_COLUMN.get(c, c), types[c]) for c in self.kind.written]

    @property
    def qualified_name(self) -> str:
        """``schema.table``, for messages."""
        return f"{self.schema}.{self.table_name}"

    @contextmanager
    def cursor(self, mode: Mode = Mode.TRANSACTION, tuples: bool = False) -> Iterator[Any]:
        """``TableStore.cursor`` on a connection that sends and receives pgvector values."""
        with super().cursor(mode, tuples) as cur:
            _register_vector(cur.connection)
            yield cur

    # -- tables ----------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Enable pgvector, create the table as LightRAG does, check the table's vector
        dimension and create the vector index chosen by POSTGRES_VECTOR_INDEX_TYPE.
        """
        self._iterative_scans = ensure_pgvector(self.manager) >= (0, 8)
        ensure_vector_table(
            self.manager, self.schema, self.table_name, self.kind.columns, self.embedding_dim
        )
        with self.cursor(Mode.AUTOCOMMIT, tuples=True) as cur:
            check_dimension(cur, self.schema, self.table_name, self.embedding_dim)
        ensure_vector_index(self.manager, self.schema, self.table_name, self.embedding_dim)

    # -- writes ----------------------------------------------------------------

    def upsert(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Insert or update rows ``{id: {LightRAG's fields..., "__vector__": embedding}}``.

        The whole batch is checked first; then it is written in one transaction, in key
        order, as INSERT ... ON CONFLICT DO UPDATE would leave it: the stored rows of these
        ids are deleted (keeping their create_time) and every row is copied in by binary
        COPY, the server's bulk path. A row is replaced, not updated in place, either way:
        its new vector is a new index entry.
        """
        if not data:
            return
        if not isinstance(data, Mapping):
            raise InvalidInput(f"upsert expects a dict of id -> row, got {type(data).__name__}.")
        now = utc_now()
        rows = in_lock_order((self._row(key, item) for key, item in data.items()), key=_by_key)
        with self.cursor() as cur:  # says so when pgvector is missing
            for attempt in range(1, _REPLACE_ATTEMPTS + 1):
                try:
                    self._replace(cur, rows, now, first=attempt == 1)
                    break
                except psycopg2.errors.UniqueViolation as exc:
                    if attempt == _REPLACE_ATTEMPTS:
                        raise self._rival_kept_writing(len(rows)) from exc
                    cur.execute(_ROLLBACK_TO_SAVEPOINT)
                    logger.debug(
                        "rows of %s stored by a writer without row locks: again (attempt %d)",
                        self.qualified_name,
                        attempt + 1,
                    )
        logger.debug("upserted %d rows into %s", len(rows), self.qualified_name)

    def _replace(self, cur: Any, rows: list[_Row], now: datetime.datetime, first: bool) -> None:
        """Per chunk: delete the stored rows of its ids, locking them in key order, then
        COPY the whole chunk in binary, each row with its old create_time if it had one.
        The first attempt's first delete also takes every id's lock and sets the savepoint,
        in the same round trip."""
        for index, part in enumerate(chunked(rows, _WRITE_CHUNK)):
            params: tuple[Any, ...] = (self.workspace, [key for key, _, _ in part])
            delete = self._delete_stored_sql
            if first and index == 0:
                delete = self._first_delete_sql
                params = self._row_lock_params(key for key, _, _ in rows) + params
            cur.execute(delete, params)
            created = {row["id"]: row["create_time"] for row in cur.fetchall()}
            values = [
                (self.workspace, key, *fields, created.get(key, now), now)
                for key, fields, _ in part
            ]
            stream = table_rows(self._copy_encoders, values, np.stack([v for _, _, v in part]))
            cur.copy_expert(self._copy_sql, io.BytesIO(stream))

    def _row_lock_params(self, keys: Iterable[str]) -> tuple[int, list[int]]:
        """_ROW_LOCKS' parameters: the namespace, and the ids' lock keys, sorted and unique
        (a 32-bit hash of schema, table, workspace and id: two ids sharing a key only wait
        for each other)."""
        hashes = set()
        for key in keys:
            digest = self._lock_prefix.copy()
            digest.update(key.encode())
            hashes.add(int.from_bytes(digest.digest(), "big", signed=True))
        return locks.VECTOR_ROW, sorted(hashes)

    def _rival_kept_writing(self, count: int) -> TransientFailure:
        return TransientFailure(
            f"an upsert of {count} rows into {self.qualified_name} (workspace "
            f"{self.workspace!r:.80}) met rows of its ids stored meanwhile by another writer "
            f"{_REPLACE_ATTEMPTS} times, and wrote nothing: a writer that does not take "
            "aperag_pg's row locks (LightRAG's own PGVectorStorage, or an older aperag_pg) "
            "writes to this workspace. Running the upsert again is safe; fix: let only "
            "aperag_pg's stores write to this workspace."
        )

    def check_fields(self, key: Any, item: Any) -> tuple[Any, ...]:
        """The written columns' values of row ``key``, each checked, the embedding apart:
        what an upsert would refuse before its vector exists (a buffered LightRAG upsert)."""
        self._check_shape(key, item)
        return self._values(key, item)

    def _row(self, key: Any, item: Any) -> _Row:
        """(id, the written columns' values, the float32 vector), every value checked."""
        self._check_shape(key, item)
        if "__vector__" not in item:
            raise InvalidInput(
                f"vector row {key!r:.80} has no '__vector__' (its embedding); nothing was written."
            )
        vector = self._vector(item["__vector__"], f"vector row {key!r:.80}")
        return key, self._values(key, item), vector

    @staticmethod
    def _check_shape(key: Any, item: Any) -> None:
        check_key(key, "vector id")
        if not isinstance(item, Mapping):
            raise InvalidInput(
                f"vector row {key!r:.80} must be a dict of fields, got {type(item).__name__}."
            )

    def _values(self, key: str, item: Mapping[str, Any]) -> tuple[Any, ...]:
        values = self.kind.build(item, key)
        for (field, sql_type), value in zip(self._written_types, values, strict=True):
            check_column(value, sql_type, f"field {field!r} of vector row {key!r:.80}")
        return values

    def _vector(self, value: Any, what: str) -> np.ndarray:
        """``value`` as a float32 array of embedding_dim finite numbers, or raise."""
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{what}: the vector is not a list of numbers ({exc}).") from None
        if array.ndim != 1:
            raise InvalidInput(f"{what}: the vector must be flat, got shape {array.shape}.")
        if array.shape[0] != self.embedding_dim:
            raise VectorDimensionMismatch(
                f"{what} has a {array.shape[0]}-dimensional vector but table "
                f"{self.qualified_name} stores {self.embedding_dim}-dimensional vectors; nothing "
                "was written. Fix: use the embedding model this table was made for."
            )
        finite = np.isfinite(array)
        if not finite.all():
            position = int(np.flatnonzero(~finite)[0])
            raise InvalidInput(
                f"{what} has NaN or an infinite value at position {position} (or a value "
                "beyond float32's range), which pgvector cannot store; nothing was written. "
                "Fix the embedding (e.g. check the model's output) and try again."
            )
        return array

    def delete(self, ids: Iterable[str]) -> None:
        """Delete rows by id; unknown ids are ignored."""
        keys = in_lock_order(_unique_keys(ids, "vector id"))
        if not keys:
            return
        with self.cursor(Mode.writes(len(keys) <= _READ_CHUNK)) as cur:
            statement = self._delete_sql(_BY_IDS)
            for chunk in chunked(keys, _READ_CHUNK):
                cur.execute(statement, (self.workspace, chunk))

    def delete_entity(self, entity_name: str) -> None:
        """Delete the entity's vector (entities namespace): rows with this entity_name, and
        the row with LightRAG's id for it, ``compute_mdhash_id(entity_name, "ent-")``.
        """
        self._require_kind("LIGHTRAG_VDB_ENTITY", "delete_entity")
        name = _check_name(entity_name, "entity_name")
        with self.cursor(Mode.WRITE) as cur:
            cur.execute(
                self._delete_sql(_BY_ENTITY),
                (self.workspace, name, compute_mdhash_id(name, prefix="ent-")),
            )

    def delete_entity_relation(self, entity_name: str) -> None:
        """Delete every relation whose source or target is ``entity_name`` (relationships)."""
        self._require_kind("LIGHTRAG_VDB_RELATION", "delete_entity_relation")
        name = _check_name(entity_name, "entity_name")
        with self.cursor(Mode.WRITE) as cur:
            cur.execute(self._delete_sql(_BY_RELATION), (self.workspace, name, name))

    def drop(self) -> None:
        """Delete this workspace's rows, here and in LightRAG's legacy table without the
        model suffix if it exists (else LightRAG would migrate them back on its next start).
        """
        with self.cursor(tuples=True) as cur:
            tables = [self.table_name]
            if self.base_table != self.table_name:
                if table_exists(cur, self.schema, self.base_table):
                    tables.append(self.base_table)
            for table in tables:
                cur.execute(self._delete_sql(_WHOLE_WORKSPACE, table=table), (self.workspace,))

    # -- reads -----------------------------------------------------------------

    def query(
        self, vector: Any, top_k: int, cosine_better_than_threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """The ``top_k`` rows nearest to ``vector`` whose cosine similarity is above the
        threshold (the store's unless given), nearest first, with LightRAG's fields:
        chunks ``id, content, file_path, created_at``; entities ``entity_name, created_at``;
        relationships ``src_id, tgt_id, created_at``.
        """
        if type(top_k) is not int or top_k < 0:
            raise InvalidInput(f"top_k must be a whole number >= 0, got {top_k!r}.")
        threshold = (
            self.cosine_better_than_threshold
            if cosine_better_than_threshold is None
            else _check_threshold(cosine_better_than_threshold)
        )
        embedding = self._vector(vector, "the query")
        statement = sql.SQL(_QUERY).format(
            select=sql.SQL(self.kind.select), table=self.table(self.table_name)
        )
        settings, setting_values = self._scan_settings(top_k)
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            # LightRAG's rule: cosine distance strictly below 1 - threshold.
            literal = vector_literal(embedding)  # exact, ~9x faster than decimal text
            params = (*setting_values, literal, self.workspace, 1 - threshold, top_k)
            cur.execute(settings + statement, params)
            return [dict(row) for row in cur.fetchall()]

    def _scan_settings(self, top_k: int) -> tuple[sql.Composable, tuple[str, ...]]:
        """The SET LOCAL statements sent ahead of an HNSW query: the iterative scan
        (pgvector 0.8+), and hnsw.ef_search when POSTGRES_HNSW_EF_SEARCH is set; without
        iterative scans ef_search is raised to top_k instead, as an HNSW scan returns at
        most ef_search rows. (A higher ef_search also makes the planner cost the index
        higher, so with a workspace filter it may scan the table instead.)"""
        settings = self.manager.settings()
        if settings.vector_index_type != "HNSW":
            return sql.SQL(""), ()
        if self._iterative_scans:
            ef_search = settings.hnsw_ef_search
        else:
            ef_search = max(settings.hnsw_ef_search, top_k)
            if ef_search <= PGVECTOR_EF_SEARCH and not settings.hnsw_ef_search:
                ef_search = 0
        statement = _ITERATIVE_SCAN if self._iterative_scans else ""
        if not ef_search:
            return sql.SQL(statement), ()
        return sql.SQL(statement + _EF_SEARCH), (str(min(ef_search, MAX_EF_SEARCH)),)

    def get_by_id(self, id: str) -> dict[str, Any] | None:
        """The row without its vector, plus ``created_at`` (epoch seconds); None if missing."""
        return self.get_by_ids([id])[0]

    def get_by_ids(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Rows as :meth:`get_by_id`, in the order of ``ids``, None where missing."""
        if isinstance(ids, str):
            raise InvalidInput(f"expected a list of vector ids, got the single string {ids!r:.80}.")
        keys = [check_key(key, "vector id") for key in ids]
        if not keys:
            return []
        statement = sql.SQL(_SELECT_BY_IDS).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, self.kind.stored)),
            table=self.table(self.table_name),
        )
        found: dict[str, dict[str, Any]] = {}
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            for chunk in chunked(dict.fromkeys(keys), _READ_CHUNK):
                cur.execute(statement, (self.workspace, chunk))
                found.update((row["id"], dict(row)) for row in cur.fetchall())
        return [found.get(key) for key in keys]

    def get_vectors_by_ids(self, ids: Iterable[str]) -> dict[str, list[float]]:
        """``{id: embedding as a list of floats}`` for the ids that exist."""
        keys = _unique_keys(ids, "vector id")
        if not keys:
            return {}
        result: dict[str, list[float]] = {}
        with self.cursor(Mode.AUTOCOMMIT, tuples=True) as cur:
            statement = self.render(_COPY_VECTORS, table=self.table_name)
            for chunk in chunked(keys, _READ_CHUNK):
                for id_, vector in read_rows(copy_out(cur, statement, (self.workspace, chunk))):
                    assert id_ is not None and vector is not None  # both columns NOT NULL
                    result[bytes(id_).decode()] = vector_values(vector)
        return result

    # -- helpers ---------------------------------------------------------------

    def _delete_sql(self, rows: str, returning: str = "", table: str | None = None) -> sql.Composed:
        """_DELETE_LOCKED of ``rows`` (one of the _BY_* conditions) in the store's table."""
        return sql.SQL(_DELETE_LOCKED + returning).format(
            table=self.table(table or self.table_name), rows=sql.SQL(rows)
        )

    def _copy_statement(self) -> tuple[sql.Composed, list[Callable[[Any], bytes]]]:
        """The COPY of whole new rows, and its fields' encoders: workspace, id, the kind's
        written columns, the two times, and the vector last (``binary_copy.table_rows``)."""
        types = dict(self.kind.columns)
        columns = ("workspace", "id", *self.kind.written, "create_time", "update_time")
        statement = sql.SQL(_COPY_ROWS).format(
            table=self.table(self.table_name),
            columns=sql.SQL(", ").join(map(sql.Identifier, (*columns, "content_vector"))),
        )
        return statement, [field_encoder(types[column]) for column in columns]

    def _require_kind(self, base_table: str, method: str) -> None:
        if self.kind is not _KINDS[base_table]:
            raise InvalidInput(
                f"{method} works on the {base_table} table, but this store serves namespace "
                f"{self.namespace!r} ({self.qualified_name})."
            )


# -- checks -----------------------------------------------------------------------------


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InvalidInput(
            f"cosine_better_than_threshold must be a finite number (e.g. 0.2), got {value!r}."
        )
    return float(value)


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}.")
    return check_storable(value, what)


def _by_key(row: tuple[str, Any, Any]) -> str:
    return row[0]


def _unique_keys(ids: Iterable[str], what: str) -> list[str]:
    if isinstance(ids, str):
        raise InvalidInput(f"expected a list of {what}s, got the single string {ids!r:.80}.")
    return list(dict.fromkeys(check_key(key, what) for key in ids))
