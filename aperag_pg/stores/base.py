"""Plumbing shared by the sync stores: workspace, table names, one transaction per call,
table creation under an advisory lock, and checks that keep bad input out of the database.

The stores use exactly LightRAG's tables (lightrag-hku 1.5.7, ``kg/postgres_impl.py``).
LightRAG creates them with unquoted names, which PostgreSQL folds to lower case, so
``LIGHTRAG_DOC_FULL`` is the table ``lightrag_doc_full``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg2 import sql

from ..cursors import DictRowCursor, Mode, cursor
from ..errors import InvalidInput
from ..manager import PostgreSQLSyncConnectionManager
from ..schema import apply_ddl, in_schema, run_statements, table_exists
from ..values import unstorable
from .leases import fence_for

DEFAULT_WORKSPACE = "default"
MAX_ID_LENGTH = 255  # VARCHAR(255) of the id and workspace columns

# LightRAG namespace -> table. Order matters: LightRAG matches with endswith(), so the
# specific names ("full_entities") must come before the general ones ("entities").
NAMESPACE_TABLES: tuple[tuple[str, str], ...] = (
    ("full_docs", "LIGHTRAG_DOC_FULL"),
    ("text_chunks", "LIGHTRAG_DOC_CHUNKS"),
    ("full_entities", "LIGHTRAG_FULL_ENTITIES"),
    ("full_relations", "LIGHTRAG_FULL_RELATIONS"),
    ("entity_chunks", "LIGHTRAG_ENTITY_CHUNKS"),
    ("relation_chunks", "LIGHTRAG_RELATION_CHUNKS"),
    ("llm_response_cache", "LIGHTRAG_LLM_CACHE"),
    ("chunks", "LIGHTRAG_VDB_CHUNKS"),
    ("entities", "LIGHTRAG_VDB_ENTITY"),
    ("relationships", "LIGHTRAG_VDB_RELATION"),
    ("doc_status", "LIGHTRAG_DOC_STATUS"),
)


def table_for_namespace(namespace: str) -> str:
    """LightRAG's table for a namespace, e.g. ``"text_chunks"`` -> LIGHTRAG_DOC_CHUNKS."""
    for suffix, table in NAMESPACE_TABLES:
        if namespace.endswith(suffix):
            return table
    known = ", ".join(suffix for suffix, _ in NAMESPACE_TABLES)
    raise InvalidInput(f"unknown LightRAG namespace {namespace!r}: expected one ending in {known}.")


def resolve_workspace(from_environment: str | None, given: str | None) -> str:
    """LightRAG's order: POSTGRES_WORKSPACE, then the constructor's value, then "default"."""
    workspace = from_environment or given or DEFAULT_WORKSPACE
    check_key(workspace, "workspace")
    return workspace


def workspace_fence(schema: str, workspace: str) -> tuple[str, str, str]:
    """The fence scope of a workspace's stores: a lease held with ``fence=`` this scope
    (LightRAG's writer lease) fences their writes."""
    return ("lightrag-workspace", schema, workspace)


def utc_now() -> datetime.datetime:
    """Naive UTC now, as LightRAG writes its TIMESTAMP columns."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# -- input checks: raise before anything is written ---------------------------------


def check_key(value: Any, what: str, max_length: int = MAX_ID_LENGTH) -> str:
    """An id or workspace: a storable string (no NUL, no lone surrogate) of at most
    ``max_length`` characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}: {value!r:.80}")
    reason = unstorable(value)
    if reason:
        raise InvalidInput(f"{what} {value!r:.80} contains {reason}.")
    if len(value) > max_length:
        raise InvalidInput(
            f"{what} {value[:40]!r}... is {len(value)} characters long; LightRAG's tables allow "
            f"at most {max_length}: use a shorter {what} (e.g. a hash of it)."
        )
    return value


class TableStore:
    """Base of the sync stores: one LightRAG namespace in one workspace, on the process pool.

    Every public method of a store is one transaction (``self.cursor()``).
    Tables are always named with their schema, so nothing depends on search_path.
    """

    def __init__(
        self,
        namespace: str,
        workspace: str | None = None,
        manager: type[PostgreSQLSyncConnectionManager] = PostgreSQLSyncConnectionManager,
    ) -> None:
        settings = manager.settings()
        self.manager = manager
        self.namespace = namespace
        self.workspace = resolve_workspace(settings.workspace, workspace)
        self.schema = settings.schema

    def table(self, name: str) -> sql.Composed:
        """``"schema"."lightrag_..."`` for one of LightRAG's table names."""
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name.lower()))

    def render(self, template: str, **tables: str) -> sql.Composed:
        """Fill ``{name}`` placeholders of ``template`` with schema-qualified tables."""
        return in_schema(template, self.schema, **{k: self.table(v) for k, v in tables.items()})

    @contextmanager
    def cursor(self, mode: Mode = Mode.TRANSACTION, tuples: bool = False) -> Iterator[Any]:
        """The store's one way to a cursor: rows as dicts (``tuples`` gives psycopg2's own
        tuple rows, for results too large to turn into dicts), the statements run as
        ``mode`` says. A public method that only reads uses ``Mode.AUTOCOMMIT`` and one that
        writes with one statement ``Mode.WRITE``: under READ COMMITTED each statement sees
        committed data either way, and skipping BEGIN and COMMIT saves two round trips. Writes
        (``Mode.WRITE``, ``Mode.TRANSACTION``) in a workspace whose writer lease this
        process holds commit only while it holds it (``leases.py``, fencing)."""
        factory = None if tuples else DictRowCursor
        fence = fence_for(workspace_fence(self.schema, self.workspace))
        with cursor(self.manager, mode, factory, fence) as cur:
            yield cur

    def ensure_tables(self) -> None:
        """Create the store's tables unless they exist (each store knows its own)."""
        raise NotImplementedError

    def ensure_table(self, name: str, statements: Sequence[str], **tables: str) -> None:
        """Create table ``name`` with ``statements`` (``{table}`` = the table, ``{schema}`` =
        the schema, and ``{key}`` = the table named by each keyword in ``tables``) unless it
        exists, through the package's one DDL runner."""
        named = {key: self.table(table) for key, table in tables.items()}
        rendered = [
            in_schema(statement, self.schema, table=self.table(name), **named)
            for statement in statements
        ]
        apply_ddl(
            f"LightRAG's table {name.lower()}",
            self.schema,
            lambda cur: table_exists(cur, self.schema, name.lower()),
            lambda cur: run_statements(cur, rendered),
            self.manager,
        )
