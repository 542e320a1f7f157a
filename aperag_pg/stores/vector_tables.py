"""LightRAG's vector tables as such: their names, the DDL text of the pgvector extension
and the vector index, and finding the tables a schema holds. ``vector.py`` holds the store.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from ..errors import InvalidInput
from .base import table_for_namespace

PG_MAX_IDENTIFIER_LENGTH = 63
MAX_DIMENSION = 16000  # pgvector's limit for the vector type
VECTOR_NAMESPACES = ("chunks", "entities", "relationships")  # LightRAG's three vector storages
MAX_INDEXED_DIMENSION = 2000  # pgvector's limit for HNSW and IVFFLAT on vector columns

# Every vector index name LightRAG may have created; one is dropped when another type
# is created in its place, as LightRAG does when POSTGRES_VECTOR_INDEX_TYPE changes.
VECTOR_INDEX_SUFFIXES = ("hnsw_cosine", "hnsw_halfvec_cosine", "ivfflat_cosine", "vchordrq_cosine")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")

PGVECTOR_INSTALLED = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
CREATE_PGVECTOR = "CREATE EXTENSION IF NOT EXISTS vector"
VECTOR_COLUMN = """
SELECT a.atttypmod AS dim, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  AND a.attname = 'content_vector' AND NOT a.attisdropped
"""
# LightRAG's vector tables in a schema, with their vector dimension (-1: undimensioned).
VECTOR_TABLES = """
SELECT c.relname, a.atttypmod
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'content_vector' AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND starts_with(c.relname, 'lightrag_vdb_')
ORDER BY c.relname
"""
HAS_ROWS = "SELECT EXISTS (SELECT 1 FROM {table})"
INDEX_EXISTS = """
SELECT 1 FROM pg_indexes WHERE schemaname = %s AND tablename = %s AND indexname = %s
"""
TABLE_EXISTS = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL AS found"
CREATE_INDEX = {
    "HNSW": "CREATE INDEX IF NOT EXISTS {index} ON {table} "
    "USING hnsw (content_vector vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})",
    "IVFFLAT": "CREATE INDEX IF NOT EXISTS {index} ON {table} "
    "USING ivfflat (content_vector vector_cosine_ops) WITH (lists = {lists})",
}
DROP_INDEX = "DROP INDEX IF EXISTS {schema}.{index}"


def safe_index_name(table_name: str, index_suffix: str) -> str:
    """LightRAG's ``_safe_index_name``: ``idx_<table>_<suffix>``, or with the table's md5
    prefix in place of the table when that is longer than PostgreSQL's 63 bytes.
    """
    full_name = f"idx_{table_name.lower()}_{index_suffix}"
    if len(full_name.encode("utf-8")) <= PG_MAX_IDENTIFIER_LENGTH:
        return full_name
    table_hash = hashlib.md5(table_name.lower().encode("utf-8")).hexdigest()[:12]
    return f"idx_{table_hash}_{index_suffix}"


def plain_identifier(name: str) -> str:
    """A lower-case name made of [a-z0-9_] only, so it may appear unquoted in DDL text."""
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise AssertionError(f"not a plain identifier: {name!r}")
    return name


def check_table_name(table_name: Any, base_table: str) -> None:
    if not isinstance(table_name, str) or not _TABLE_NAME.match(table_name):
        raise InvalidInput(
            f"vector table name {table_name!r:.80} must consist of letters, digits and "
            "underscores only (LightRAG's <base>_<model>_<dim>d)."
        )
    if len(table_name) > PG_MAX_IDENTIFIER_LENGTH:
        raise InvalidInput(
            f"vector table name {table_name!r} is {len(table_name)} characters long; "
            f"PostgreSQL allows {PG_MAX_IDENTIFIER_LENGTH}: use a shorter embedding model name."
        )
    upper = table_name.upper()
    if upper != base_table and not upper.startswith(base_table + "_"):
        raise InvalidInput(
            f"vector table name {table_name!r} must be {base_table}, LightRAG's table for "
            f"this namespace, or start with {base_table}_ (followed by the model suffix)."
        )


def index_option(value: Any, variable: str) -> int:
    """An index option from the settings: a positive whole number, rendered as a literal."""
    if type(value) is not int or value < 1:
        raise InvalidInput(f"{variable} must be a positive whole number, got {value!r}.")
    return value


def version_tuple(text: str) -> tuple[int, ...]:
    """ "0.8.1" -> (0, 8, 1); parts that are not numbers end it."""
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@dataclass(frozen=True)
class VectorTable:
    """One of LightRAG's vector tables as found in the database."""

    name: str
    dimension: int  # 0: a vector column without a dimension
    has_rows: bool


def vector_tables(conn: Any, schema: str) -> list[VectorTable]:
    """LightRAG's vector tables in ``schema``, with their dimension and whether they hold
    any row; on any connection (a worker checks them at start, before it has a pool)."""
    with conn.cursor() as cur:
        cur.execute(VECTOR_TABLES, (schema,))
        found = cur.fetchall()
        tables = []
        for name, typmod in found:
            cur.execute(sql.SQL(HAS_ROWS).format(table=sql.Identifier(schema, name)))
            tables.append(VectorTable(name, max(typmod, 0), bool(cur.fetchone()[0])))
    return tables


def vector_table_name(namespace: str, model_name: str | None, embedding_dim: int) -> str:
    """LightRAG's table for a vector namespace: base name plus ``<model>_<dim>d`` (its
    ``BaseVectorStorage._generate_collection_suffix``), or the base name without a model.
    """
    base = table_for_namespace(namespace)
    if not model_name or not model_name.strip():
        return base
    return f"{base}_{re.sub(r'[^a-zA-Z0-9_]', '_', model_name.strip().lower())}_{embedding_dim}d"
