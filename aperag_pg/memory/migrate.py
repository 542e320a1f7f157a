"""Creates and upgrades the store tables through the package's one DDL runner.

Everything runs in one transaction under the DDL lock: concurrent ``setup()`` calls (every
worker process at start) wait for the first and then find nothing to do, and a failure
leaves nothing half made. The versions recorded are upstream's, so ``PostgresStore`` finds
the tables up to date (and a newer upstream's further versions are left alone).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg2 import sql as pgsql

from ..cursors import Manager
from ..errors import EmbeddingDimensionMismatch
from ..pgvector import ensure_pgvector
from ..schema import apply_ddl, in_schema
from . import sql
from .config import VectorIndex

logger = logging.getLogger(__name__)

STORE_VERSIONS = "store_migrations"
VECTOR_VERSIONS = "vector_migrations"
LATEST_STORE_VERSION = len(sql.STORE_MIGRATIONS) - 1
FRACTIONAL_TTL_TYPE = "double precision"


def setup_store_tables(schema: str, index: VectorIndex | None, manager: Manager) -> tuple[int, ...]:
    """Make the store's tables (and with ``index``, pgvector, ``store_vectors`` and its ANN
    index) in ``schema``; return pgvector's version, () without ``index``."""
    pgvector = ensure_pgvector(manager) if index else ()
    tables = _Tables(schema, index)
    applied = apply_ddl(
        "the LangGraph store tables", schema, tables.up_to_date, tables.migrate, manager
    )
    if applied:
        logger.info("schema %s: applied store migrations %s", schema, applied)
    return pgvector


class _Tables:
    def __init__(self, schema: str, index: VectorIndex | None) -> None:
        self.schema = schema
        self.index = index
        self._ttl_type: str | None = None

    def compose(self, template: pgsql.SQL, **parts: pgsql.Composable) -> pgsql.Composed:
        return in_schema(template, self.schema, **parts)

    def versions(self, template: pgsql.SQL, table: str) -> pgsql.Composed:
        return self.compose(template, table=pgsql.Identifier(table))

    def up_to_date(self, cur: Any) -> bool:
        names = {  # to_regclass's argument: the quoted, qualified name, as a parameter
            name: pgsql.Identifier(self.schema, name).as_string(cur)
            for name in ("store", "store_vectors", STORE_VERSIONS, VECTOR_VERSIONS)
        }
        cur.execute(sql.STATE, names)
        has_store_versions, has_vector_versions, ttl_type, embedding_type = cur.fetchone()
        self._ttl_type = ttl_type
        self._check_embedding_type(embedding_type)
        if not has_store_versions or ttl_type != FRACTIONAL_TTL_TYPE:
            return False
        if self._version(cur, STORE_VERSIONS) < LATEST_STORE_VERSION:
            return False
        if self.index is None:
            return True
        if not has_vector_versions or embedding_type is None:
            return False
        return self._version(cur, VECTOR_VERSIONS) >= self._latest_vector_version()

    def migrate(self, cur: Any) -> list[str]:
        applied = [f"store {v}" for v in self._run(cur, STORE_VERSIONS, self._store_step)]
        if self._ttl_type != FRACTIONAL_TTL_TYPE:  # read by up_to_date, just before
            cur.execute(self.compose(sql.FRACTIONAL_TTL))
            applied.append("fractional ttl_minutes")
        if self.index is not None:
            applied += [f"vector {v}" for v in self._run(cur, VECTOR_VERSIONS, self._vector_step)]
        return applied

    def _run(self, cur: Any, table: str, step: Any) -> list[int]:
        cur.execute(self.versions(sql.CREATE_VERSIONS, table))
        applied = []
        latest = self._version(cur, table)
        for version in range(latest + 1, self._last_version(table) + 1):
            if step(cur, version):
                cur.execute(self.versions(sql.RECORD_VERSION, table), (version,))
                applied.append(version)
        return applied

    def _store_step(self, cur: Any, version: int) -> bool:
        cur.execute(self.compose(sql.STORE_MIGRATIONS[version]))
        return True

    def _vector_step(self, cur: Any, version: int) -> bool:
        index = self.index
        assert index is not None  # the vector steps run only for a store with an index
        if version == 0:
            return True  # the pgvector extension, made before (ensure_pgvector)
        if version == 1:
            cur.execute(self.compose(sql.CREATE_STORE_VECTORS, column_type=index.column_type_sql))
            return True
        if index.kind == "flat":
            return False  # no ANN index, and not recorded, as upstream
        cur.execute(self.compose(sql.CREATE_VECTOR_INDEX, **index.index_ddl_parts()))
        return True

    def _version(self, cur: Any, table: str) -> int:
        cur.execute(self.versions(sql.LATEST_VERSION, table))
        latest = cur.fetchone()[0]
        return -1 if latest is None else latest

    def _last_version(self, table: str) -> int:
        return LATEST_STORE_VERSION if table == STORE_VERSIONS else sql.STORE_VECTOR_INDEX_VERSION

    def _latest_vector_version(self) -> int:
        index_version = sql.STORE_VECTOR_INDEX_VERSION
        flat = self.index is not None and self.index.kind == "flat"
        return index_version - 1 if flat else index_version

    def _check_embedding_type(self, embedding_type: str | None) -> None:
        if self.index is None or embedding_type is None:
            return
        if embedding_type != self.index.column_type:
            raise EmbeddingDimensionMismatch(
                f"{self.schema}.store_vectors holds {embedding_type} embeddings, but the "
                f"store's index asks for {self.index.column_type}. Fix: set index dims and "
                "ann_index_config vector_type to the table's, or keep this embedding model's "
                "memories in another schema (PGSyncStore(schema=...))."
            )
