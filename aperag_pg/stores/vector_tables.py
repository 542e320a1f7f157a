"""LightRAG's vector tables as such: their names, making them (the table, the vector index)
through the package's DDL runner, checking their dimension, and finding the tables a
schema holds. ``vector.py`` holds the store; ``pgvector.py`` the extension.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from ..cursors import Manager
from ..errors import (
    InvalidInput,
    SchemaError,
    VectorDimensionMismatch,
)
from ..pgvector import MAX_DIMENSIONS, MAX_INDEXED_DIMENSIONS
from ..schema import apply_ddl, run_statements, table_exists
from .base import table_for_namespace

logger = logging.getLogger(__name__)

PG_MAX_IDENTIFIER_LENGTH = 63
MAX_DIMENSION = MAX_DIMENSIONS["vector"]
VECTOR_NAMESPACES = ("chunks", "entities", "relationships")  # LightRAG's three vector storages
MAX_INDEXED_DIMENSION = MAX_INDEXED_DIMENSIONS["vector"]  # HNSW and IVFFLAT

# Every vector index name LightRAG may have created; one is dropped when another type
# is created in its place, as LightRAG does when POSTGRES_VECTOR_INDEX_TYPE changes.
VECTOR_INDEX_SUFFIXES = ("hnsw_cosine", "hnsw_halfvec_cosine", "ivfflat_cosine", "vchordrq_cosine")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")

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
CREATE_INDEX = {
    "HNSW": "CREATE INDEX IF NOT EXISTS {index} ON {table} "
    "USING hnsw (content_vector vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})",
    "IVFFLAT": "CREATE INDEX IF NOT EXISTS {index} ON {table} "
    "USING ivfflat (content_vector vector_cosine_ops) WITH (lists = {lists})",
}
DROP_INDEX = "DROP INDEX IF EXISTS {schema}.{index}"
# LightRAG's vector table DDL, names filled by psycopg2.sql
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} ({columns}, {constraint}PRIMARY KEY (workspace, id))"
)
CONSTRAINT = "CONSTRAINT {} "
CREATE_ID_INDEX = "CREATE INDEX IF NOT EXISTS {index} ON {table} ({columns})"


def ensure_vector_table(
    manager: Manager,
    schema: str,
    table_name: str,
    columns: Sequence[tuple[str, str]],
    embedding_dim: int,
) -> None:
    """Create LightRAG's vector table and its two id indexes unless the table exists,
    through the package's one DDL runner."""
    statements = create_table_statements(schema, table_name, columns, embedding_dim)
    apply_ddl(
        f"LightRAG's table {table_name}",
        schema,
        lambda cur: table_exists(cur, schema, table_name),
        lambda cur: run_statements(cur, statements),
        manager,
    )


def create_table_statements(
    schema: str, table_name: str, columns: Sequence[tuple[str, str]], embedding_dim: int
) -> list[sql.Composed]:
    """LightRAG's DDL for a vector table: ``columns`` are (name, SQL type) pairs from the
    store's fixed table shapes, ``VECTOR(dimension)`` standing for the vector column."""
    table = sql.Identifier(schema, table_name)
    listed = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), _column_type(kind, embedding_dim))
        for name, kind in columns
    )
    # LightRAG names the key "<table>_PK", which PostgreSQL cuts to 63 bytes; at exactly
    # 63 that would be the table's own name, so PostgreSQL then chooses one.
    pk_name = plain_identifier(f"{table_name}_pk"[:PG_MAX_IDENTIFIER_LENGTH])
    constraint = (
        sql.SQL("")
        if pk_name == table_name
        else sql.SQL(CONSTRAINT).format(sql.Identifier(pk_name))
    )
    return [
        sql.SQL(CREATE_TABLE).format(table=table, columns=listed, constraint=constraint),
        *(
            sql.SQL(CREATE_ID_INDEX).format(
                index=sql.Identifier(plain_identifier(safe_index_name(table_name, suffix))),
                table=table,
                columns=sql.SQL(", ").join(map(sql.Identifier, key)),
            )
            for suffix, key in (("id", ("id",)), ("workspace_id", ("workspace", "id")))
        ),
    ]


def _column_type(sql_type: str, embedding_dim: int) -> sql.Composable:
    if sql_type == "VECTOR(dimension)":
        return sql.SQL("VECTOR({})").format(sql.Literal(embedding_dim))  # a typmod: no parameter
    return sql.SQL(sql_type)  # one of the store's constant column types


def check_dimension(cur: Any, schema: str, table_name: str, embedding_dim: int) -> None:
    """Raise unless the table's content_vector column holds ``embedding_dim`` dimensions."""
    cur.execute(VECTOR_COLUMN, (schema, table_name))
    row = cur.fetchone()
    qualified_name = f"{schema}.{table_name}"
    if row is None:
        raise SchemaError(
            f"table {qualified_name} has no content_vector column, so it is not a "
            "LightRAG vector table: choose another table name or drop that table."
        )
    dim, column_type = row
    if dim != embedding_dim:
        stored = f"{dim}-dimensional" if dim > 0 else "undimensioned"
        raise VectorDimensionMismatch(
            f"table {qualified_name} stores {stored} vectors (content_vector "
            f"{column_type}) but this store's embedding_dim is {embedding_dim}. "
            "Fix: use the embedding model the table was made for, or a table name whose "
            "model suffix matches this model (LightRAG names it <base>_<model>_<dim>d), "
            "or drop the table to start over."
        )


def ensure_vector_index(manager: Manager, schema: str, table_name: str, embedding_dim: int) -> None:
    """The index POSTGRES_VECTOR_INDEX_TYPE names, in place of any other type's, as
    LightRAG makes it; none for NONE, or for more dimensions than pgvector indexes."""
    settings = manager.settings()
    index_type = settings.vector_index_type
    if index_type not in CREATE_INDEX:
        return  # NONE: exact search, no index
    if embedding_dim > MAX_INDEXED_DIMENSION:
        # LightRAG tries, fails and logs the error; the table is searched exactly.
        logger.warning(
            "not creating a %s index on %s.%s: pgvector indexes vectors of at most %d "
            "dimensions, this table has %d; queries scan the table",
            index_type,
            schema,
            table_name,
            MAX_INDEXED_DIMENSION,
            embedding_dim,
        )
        return
    suffix = f"{index_type.lower()}_cosine"
    name = safe_index_name(table_name, suffix)
    options = {
        "m": index_option(settings.hnsw_m, "POSTGRES_HNSW_M"),
        "ef": index_option(settings.hnsw_ef, "POSTGRES_HNSW_EF"),
        "lists": index_option(settings.ivfflat_lists, "POSTGRES_IVFFLAT_LISTS"),
    }
    create = sql.SQL(CREATE_INDEX[index_type]).format(
        index=sql.Identifier(name),
        table=sql.Identifier(schema, table_name),
        **{key: sql.Literal(value) for key, value in options.items()},
    )
    others = [
        sql.SQL(DROP_INDEX).format(
            schema=sql.Identifier(schema),
            index=sql.Identifier(safe_index_name(table_name, other)),
        )
        for other in VECTOR_INDEX_SUFFIXES
        if other != suffix
    ]

    def index_exists(cur: Any) -> bool:
        cur.execute(INDEX_EXISTS, (schema, table_name, name))
        return cur.fetchone() is not None

    def replace_index(cur: Any) -> None:
        logger.info("creating %s index %s on %s.%s", index_type, name, schema, table_name)
        for statement in [*others, create]:
            cur.execute(statement)

    apply_ddl(f"the vector index {name}", schema, index_exists, replace_index, manager)


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
