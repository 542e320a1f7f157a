"""The key-value store: LightRAG's seven KV tables (lightrag-hku 1.5.7 ``PGKVStorage``).

Same tables, columns, keys and row shapes as ``PGKVStorage``, so LightRAG and this store
can read each other's rows. Each namespace is described once in ``_LAYOUTS`` (its DDL,
the columns ``upsert`` writes and where their values come from, what reads select and
how LightRAG post-processes a row); the methods are the same for every namespace.

Mirrored on purpose, because LightRAG does it and its readers expect it:
- ``full_docs`` and ``llm_response_cache`` get ``create_time``/``update_time`` from the
  server's ``CURRENT_TIMESTAMP``; the other tables from the client's naive UTC clock.
- ``full_docs`` upserts keep the stored pipeline fields when the new value is NULL or
  empty (``''`` or ``{}``); ``content`` and ``doc_name`` are always overwritten.
- ``update_time == 0`` reads as ``create_time``; JSON columns are decoded once, and
  ``heading`` / ``sidecar`` / ``chunk_options`` that are not objects read as ``{}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from psycopg2 import sql

from ..batching import (
    DEFAULT_CHUNK_SIZE,
    chunked,
    execute_json_payloads,
    in_lock_order,
    json_payloads,
)
from ..cursors import Mode
from ..errors import InvalidInput
from ..manager import PostgreSQLSyncConnectionManager
from ..values import check_storable
from .base import (
    NAMESPACE_TABLES,
    TableStore,
    check_key,
    table_for_namespace,
    utc_now,
)

# The LightRAG namespaces this store serves.
KV_NAMESPACES = (
    "full_docs",
    "text_chunks",
    "llm_response_cache",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
)
_REQUIRED = object()  # a _Field default meaning "the record must have this key"
_INT4 = (-(2**31), 2**31 - 1)


class _Field(NamedTuple):
    """A column ``upsert`` writes, and how LightRAG derives its value from a record."""

    column: str
    kind: str  # "text", "int", "json", or "json_or_null" (a falsy value is SQL NULL)
    key: str | None = None  # the record's key when it differs from the column
    default: Any = _REQUIRED  # used when the key is missing; _REQUIRED: it must be there
    or_default: bool = False  # LightRAG's ``v.get(key) or default``: falsy -> default
    max_length: int | None = None  # VARCHAR(n)
    keep_if_empty: bool = False  # on conflict, a NULL/''/{} value keeps the stored one


class _Layout(NamedTuple):
    ddl: str  # LightRAG's CREATE TABLE, {table} for the name (braces doubled)
    id_length: int  # VARCHAR(n) of the id column
    fields: tuple[_Field, ...]
    client_timestamps: bool  # create/update_time sent by the client (else DB defaults)
    select: str  # the columns reads return, as LightRAG's get_by_id(s) selects them (verbatim)
    fix_row: Callable[[dict[str, Any]], dict[str, Any]]  # LightRAG's post-processing


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _fix_times(row: dict[str, Any]) -> dict[str, Any]:
    if row["update_time"] == 0:  # LightRAG: a zero update_time reads as create_time
        row["update_time"] = row["create_time"]
    return row


def _fix_doc_full(row: dict[str, Any]) -> dict[str, Any]:
    row["chunk_options"] = _dict_or_empty(row["chunk_options"])
    return row


def _fix_text_chunk(row: dict[str, Any]) -> dict[str, Any]:
    row["heading"] = _dict_or_empty(row["heading"])
    row["sidecar"] = _dict_or_empty(row["sidecar"])
    return _fix_times(row)


def _fix_llm_cache(row: dict[str, Any]) -> dict[str, Any]:
    # LightRAG adds "return" (what its cache readers use) next to return_value.
    return {**_fix_times(row), "return": row["return_value"]}


_EPOCHS = (
    "EXTRACT(EPOCH FROM create_time)::BIGINT AS create_time, "
    "EXTRACT(EPOCH FROM update_time)::BIGINT AS update_time"
)


def _list_layout(table: str, list_column: str, id_length: int) -> _Layout:
    """The four (id, <jsonb list>, count) tables differ only in these."""
    ddl = f"""CREATE TABLE IF NOT EXISTS {{table}} (
    id VARCHAR({id_length}),
    workspace VARCHAR(255),
    {list_column} JSONB,
    count INTEGER,
    create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT {table}_PK PRIMARY KEY (workspace, id)
)"""
    return _Layout(
        ddl=ddl,
        id_length=id_length,
        fields=(_Field(list_column, "json"), _Field("count", "int")),
        client_timestamps=True,
        select=f"id, {list_column}, count, {_EPOCHS}",
        fix_row=_fix_times,
    )


# Keyed by LightRAG's table name (see base.NAMESPACE_TABLES). DDL as in lightrag 1.5.7 TABLES.
_LAYOUTS: dict[str, _Layout] = {
    "LIGHTRAG_DOC_FULL": _Layout(
        ddl="""CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255),
    workspace VARCHAR(255),
    doc_name VARCHAR(1024),
    content TEXT,
    meta JSONB,
    sidecar_location TEXT NULL,
    parse_format VARCHAR(32) NULL DEFAULT 'raw',
    content_hash TEXT NULL,
    process_options TEXT NULL,
    chunk_options JSONB NULL DEFAULT '{{}}'::jsonb,
    parse_engine TEXT NULL,
    create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_DOC_FULL_PK PRIMARY KEY (workspace, id)
)""",
        id_length=255,
        fields=(
            _Field("content", "text"),
            _Field("doc_name", "text", key="file_path", default="", max_length=1024),
            _Field("sidecar_location", "text", default=None, keep_if_empty=True),
            _Field("parse_format", "text", default=None, max_length=32, keep_if_empty=True),
            _Field("content_hash", "text", default=None, keep_if_empty=True),
            _Field("process_options", "text", default=None, keep_if_empty=True),
            _Field("chunk_options", "json", default={}, or_default=True, keep_if_empty=True),
            _Field("parse_engine", "text", default=None, keep_if_empty=True),
        ),
        client_timestamps=False,
        select="id, COALESCE(content, '') AS content, COALESCE(doc_name, '') AS file_path, "
        "sidecar_location, parse_format, content_hash, process_options, "
        "COALESCE(chunk_options, '{}'::jsonb) AS chunk_options, parse_engine",
        fix_row=_fix_doc_full,
    ),
    "LIGHTRAG_DOC_CHUNKS": _Layout(
        ddl="""CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255),
    workspace VARCHAR(255),
    full_doc_id VARCHAR(256),
    chunk_order_index INTEGER,
    tokens INTEGER,
    content TEXT,
    file_path TEXT NULL,
    llm_cache_list JSONB NULL DEFAULT '[]'::jsonb,
    heading JSONB NULL DEFAULT '{{}}'::jsonb,
    sidecar JSONB NULL DEFAULT '{{}}'::jsonb,
    create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_DOC_CHUNKS_PK PRIMARY KEY (workspace, id)
)""",
        id_length=255,
        fields=(
            _Field("tokens", "int"),
            _Field("chunk_order_index", "int"),
            _Field("full_doc_id", "text", max_length=256),
            _Field("content", "text"),
            _Field("file_path", "text"),
            _Field("llm_cache_list", "json", default=[]),
            _Field("heading", "json", default={}, or_default=True),
            _Field("sidecar", "json", default={}, or_default=True),
        ),
        client_timestamps=True,
        select="id, tokens, COALESCE(content, '') AS content, chunk_order_index, full_doc_id, "
        "file_path, COALESCE(llm_cache_list, '[]'::jsonb) AS llm_cache_list, "
        f"COALESCE(heading, '{{}}'::jsonb) AS heading, "
        f"COALESCE(sidecar, '{{}}'::jsonb) AS sidecar, {_EPOCHS}",
        fix_row=_fix_text_chunk,
    ),
    "LIGHTRAG_LLM_CACHE": _Layout(
        ddl="""CREATE TABLE IF NOT EXISTS {table} (
    workspace varchar(255) NOT NULL,
    id varchar(255) NOT NULL,
    original_prompt TEXT,
    return_value TEXT,
    chunk_id VARCHAR(255) NULL,
    cache_type VARCHAR(32),
    queryparam JSONB NULL,
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_LLM_CACHE_PK PRIMARY KEY (workspace, id)
)""",
        id_length=255,
        fields=(
            _Field("original_prompt", "text"),
            _Field("return_value", "text", key="return"),
            _Field("chunk_id", "text", default=None, max_length=255),
            _Field("cache_type", "text", default="extract", max_length=32),
            _Field("queryparam", "json_or_null", default=None),
        ),
        client_timestamps=False,
        select=f"id, original_prompt, return_value, chunk_id, cache_type, queryparam, {_EPOCHS}",
        fix_row=_fix_llm_cache,
    ),
    "LIGHTRAG_FULL_ENTITIES": _list_layout("LIGHTRAG_FULL_ENTITIES", "entity_names", 255),
    "LIGHTRAG_FULL_RELATIONS": _list_layout("LIGHTRAG_FULL_RELATIONS", "relation_pairs", 255),
    "LIGHTRAG_ENTITY_CHUNKS": _list_layout("LIGHTRAG_ENTITY_CHUNKS", "chunk_ids", 512),
    "LIGHTRAG_RELATION_CHUNKS": _list_layout("LIGHTRAG_RELATION_CHUNKS", "chunk_ids", 512),
}

_GET_BY_ID = "SELECT {select} FROM {table} WHERE workspace = %s AND id = %s"
_GET_BY_IDS = "SELECT {select} FROM {table} WHERE workspace = %s AND id = ANY(%s)"
_EXISTING_IDS = "SELECT id FROM {table} WHERE workspace = %s AND id = ANY(%s)"
_DELETE = "DELETE FROM {table} WHERE workspace = %s AND id = ANY(%s)"
_HAS_ROWS = "SELECT EXISTS (SELECT 1 FROM {table} WHERE workspace = %s) AS has_data"
_DROP_WORKSPACE = "DELETE FROM {table} WHERE workspace = %s"


_RECORD_TYPES = {"text": "text", "int": "integer", "json": "jsonb", "json_or_null": "jsonb"}
# How json.dumps writes a NUL character or a UTF-16 surrogate (a lone one cannot be stored;
# a pair is an emoji, fine): seeing one sends the batch to the exact value-by-value check.
_JSON_SUSPECT = re.compile(r"\\u(?:0000|d[89a-f])")


def _upsert_sql(fields: tuple[_Field, ...], client_timestamps: bool) -> str:
    """INSERT ... ON CONFLICT DO UPDATE with LightRAG's SET rules, reading the rows from
    one JSON parameter (see ``aperag_pg.batching.json_payloads``).
    """
    columns = ["workspace", "id", *(f.column for f in fields)]
    record_types = ["workspace text", "id text"]
    record_types += [f"{f.column} {_RECORD_TYPES[f.kind]}" for f in fields]
    values = ["workspace", "id"]
    # json_to_recordset reads a JSON null as SQL NULL; LightRAG stores None as JSON null.
    values += [f"COALESCE({f.column}, 'null')" if f.kind == "json" else f.column for f in fields]
    updates = []
    for f in fields:
        new, old = f"EXCLUDED.{f.column}", f"t.{f.column}"
        if not f.keep_if_empty:
            updates.append(f"{f.column} = {new}")
        elif f.kind == "text":
            updates.append(f"{f.column} = COALESCE(NULLIF({new}, ''), {old})")
        else:
            updates.append(
                f"{f.column} = CASE WHEN {new} IS NULL OR {new} = '{{{{}}}}'::jsonb "
                f"THEN {old} ELSE {new} END"
            )
    if client_timestamps:  # create_time stays as first written
        columns += ["create_time", "update_time"]
        record_types += ["create_time timestamp", "update_time timestamp"]
        values += ["create_time", "update_time"]
        updates.append("update_time = EXCLUDED.update_time")
    else:
        updates.append("update_time = CURRENT_TIMESTAMP")
    return (
        f"INSERT INTO {{table}} AS t ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM json_to_recordset(%s::json) "
        f"AS r({', '.join(record_types)}) "
        f"ON CONFLICT (workspace, id) DO UPDATE SET {', '.join(updates)}"
    )


def _layout_for(namespace: str) -> tuple[str, _Layout]:
    table = table_for_namespace(namespace)
    if table not in _LAYOUTS:
        kv = ", ".join(suffix for suffix, name in NAMESPACE_TABLES if name in _LAYOUTS)
        raise InvalidInput(
            f"namespace {namespace!r} is stored in {table}, which is not a key-value table: "
            f"KVStore serves the namespaces ending in {kv}. Use the vector or doc-status "
            "store for this namespace."
        )
    return table, _LAYOUTS[table]


def _by_id(row: Mapping[str, Any]) -> str:
    return row["id"]


def _lookup_ids(ids: Iterable[Any]) -> list[str]:
    """Ids to look up: strings without NUL. (Ids longer than the column are simply absent.)"""
    ids = list(ids)
    for id_ in ids:
        if not isinstance(id_, str) or "\x00" in id_:
            raise InvalidInput(
                f"ids must be strings without NUL characters (\\x00), got {id_!r:.80}"
            )
    return ids


class KVStore(TableStore):
    """One LightRAG KV namespace (``full_docs``, ``text_chunks``, ``llm_response_cache``,
    ``full_entities``, ``full_relations``, ``entity_chunks``, ``relation_chunks``) in one
    workspace. Every method is one transaction.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE  # rows per INSERT statement in upsert / ids per DELETE

    def __init__(
        self,
        namespace: str,
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        self.table_name, self._layout = _layout_for(namespace)  # fail before touching the pool
        super().__init__(namespace, workspace, manager)
        fields, stamped = self._layout.fields, self._layout.client_timestamps
        self._upsert = self.render(_upsert_sql(fields, stamped), table=self.table_name)

    def ensure_tables(self) -> None:
        """Create this namespace's table and LightRAG's two indexes on it, unless it exists."""
        name = self.table_name.lower()
        self.ensure_table(
            self.table_name,
            (
                self._layout.ddl,
                # LightRAG's index names, derived from the fixed table name (never input).
                f"CREATE INDEX IF NOT EXISTS idx_{name}_id ON {{table}} (id)",
                f"CREATE INDEX IF NOT EXISTS idx_{name}_workspace_id ON {{table}} (workspace, id)",
            ),
        )

    # -- reads -------------------------------------------------------------------

    def get_by_id(self, id: str) -> dict[str, Any] | None:
        """The record, shaped as LightRAG's PGKVStorage returns it, or None."""
        (id,) = _lookup_ids([id])
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(_GET_BY_ID), (self.workspace, id))
            row = cur.fetchone()
        return self._layout.fix_row(dict(row)) if row else None

    def get_by_id_strict(self, id: str) -> dict[str, Any] | None:
        """As ``get_by_id``: errors always raise, so None is a confirmed absence."""
        return self.get_by_id(id)

    def get_by_ids(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """Records in the order of ``ids``, None where an id does not exist."""
        ids = _lookup_ids(ids)
        if not ids:
            return []
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(_GET_BY_IDS), (self.workspace, list(set(ids))))
            found = {row["id"]: row for row in cur.fetchall()}
        return [self._layout.fix_row(dict(found[i])) if i in found else None for i in ids]

    def filter_keys(self, keys: set[str]) -> set[str]:
        """The keys that do NOT exist in this workspace."""
        ids = _lookup_ids(keys)
        if not ids:
            return set()
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(_EXISTING_IDS), (self.workspace, ids))
            existing = {row["id"] for row in cur.fetchall()}
        return set(ids) - existing

    def is_empty(self) -> bool:
        """True when this workspace has no rows in the namespace's table."""
        with self.cursor(Mode.AUTOCOMMIT) as cur:
            cur.execute(self._sql(_HAS_ROWS), (self.workspace,))
            return not cur.fetchone()["has_data"]

    # -- writes ------------------------------------------------------------------

    def upsert(self, data: dict[str, dict[str, Any]]) -> None:
        """Insert or update every record, all or nothing. Everything is validated first:
        a bad id or value raises ``InvalidInput`` and nothing is written.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"upsert takes a dict of id -> record, got {type(data).__name__}")
        if not data:
            return
        now = utc_now().isoformat()  # one time for the whole call, as LightRAG does
        rows = in_lock_order(
            (self._row(id_, record, now) for id_, record in data.items()), key=_by_id
        )
        # NUL characters and values JSON cannot hold are found in the serialized batch,
        # in C, instead of value by value; only then is the culprit looked for.
        try:
            payloads = json_payloads(rows, self.chunk_size)
        except (TypeError, ValueError):
            self._raise_for_bad_value(rows)
            raise
        if any(_JSON_SUSPECT.search(payload) for payload in payloads):
            self._raise_for_bad_value(rows)  # may be fine: a literal backslash-u, an emoji
        with self.cursor(Mode.writes(one_statement=len(payloads) == 1)) as cur:
            execute_json_payloads(cur, self._upsert, payloads)

    def delete(self, ids: list[str]) -> None:
        """Delete these ids (missing ones are ignored), in one transaction."""
        ids = in_lock_order(_lookup_ids(ids))
        if not ids:
            return
        with self.cursor(Mode.writes(one_statement=len(ids) <= self.chunk_size)) as cur:
            for chunk in chunked(ids, self.chunk_size):
                cur.execute(self._sql(_DELETE), (self.workspace, chunk))

    def drop(self) -> None:
        """Delete this workspace's rows."""
        with self.cursor(Mode.WRITE) as cur:
            cur.execute(self._sql(_DROP_WORKSPACE), (self.workspace,))

    # -- helpers -----------------------------------------------------------------

    def _sql(self, template: str) -> sql.Composed:
        # {select} is a fixed column list from _LAYOUTS, never input.
        return sql.SQL(template).format(
            select=sql.SQL(self._layout.select), table=self.table(self.table_name)
        )

    def _row(self, id_: Any, record: Any, now: str) -> dict[str, Any]:
        """The row for one record, by column, or InvalidInput naming the id and field."""
        id_ = self._check_id(id_)
        if not isinstance(record, Mapping):
            raise InvalidInput(
                f"{self.namespace} record {id_!r:.80} must be a dict, got {type(record).__name__}"
            )
        row = {"workspace": self.workspace, "id": id_}
        for field in self._layout.fields:
            row[field.column] = self._value(id_, record, field)
        if self._layout.client_timestamps:
            row["create_time"] = row["update_time"] = now
        return row

    def _raise_for_bad_value(self, rows: list[dict[str, Any]]) -> None:
        """Raise InvalidInput for the first value with a NUL or that JSON cannot hold."""
        for row in rows:
            for field in self._layout.fields:
                where = self._where(row["id"], field.column)
                value = row[field.column]
                check_storable(value, where)
                try:
                    json.dumps(value, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(f"{where} cannot be stored as JSON: {exc}") from None

    def _where(self, id_: str, key: str) -> str:
        # Built only for an error message: upsert checks thousands of values per call.
        return f"{self.namespace} record {id_!r:.80}, field {key!r}"

    def _check_id(self, id_: Any) -> str:
        # entity_chunks / relation_chunks ids are VARCHAR(512); every other table's are 255.
        return check_key(id_, "id", max_length=self._layout.id_length)

    def _value(self, id_: str, record: Mapping[str, Any], field: _Field) -> Any:
        key = field.key or field.column
        if key in record:
            value = record[key]
        elif field.default is _REQUIRED:
            raise InvalidInput(
                f"{self._where(id_, key)} is missing; LightRAG requires it in every record."
            )
        else:
            value = field.default
        if field.or_default and not value:
            value = field.default
        if field.kind == "json_or_null" and not value:
            return None
        if field.kind.startswith("json"):
            return value  # checked in the serialized batch, see upsert()
        if value is None:
            return None
        if field.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(
                    f"{self._where(id_, key)} must be an int, got {type(value).__name__}"
                )
            if not _INT4[0] <= value <= _INT4[1]:
                raise InvalidInput(
                    f"{self._where(id_, key)} = {value} does not fit the INTEGER column"
                )
            return value
        if not isinstance(value, str):
            raise InvalidInput(
                f"{self._where(id_, key)} must be a string, got {type(value).__name__}"
            )
        if field.max_length is not None and len(value) > field.max_length:
            raise InvalidInput(
                f"{self._where(id_, key)} is {len(value)} characters long; the column "
                f"allows at most {field.max_length}: shorten it."
            )
        return value
