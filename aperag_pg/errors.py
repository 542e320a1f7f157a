"""The package's exceptions. Each message says what went wrong and how to fix it.

Errors that mean "the database could not be reached" subclass psycopg2's
``OperationalError`` too, so retry policies written for the driver (Celery's
``autoretry_for=(OperationalError,)``) keep working unchanged.
"""

from __future__ import annotations

import psycopg2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver messages run on with DETAIL and
    HINT lines), or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AperagPGError(Exception):
    """Base class of every error raised by aperag_pg itself."""


class ConfigError(AperagPGError, ValueError):
    """A setting is missing or invalid. The message names the variable and what is allowed."""


class PoolError(AperagPGError):
    """The connection pool cannot hand out a connection."""


class PoolTimeout(PoolError, psycopg2.OperationalError):
    """Every connection stayed in use for longer than POSTGRES_POOL_TIMEOUT."""


class PoolClosed(PoolError):
    """The pool was closed; call ``initialize()`` again to reopen it."""


class TransactionAborted(AperagPGError):
    """A transaction failed inside a ``get_connection()`` block that then ended normally:
    it was rolled back, not committed."""


class TransientFailure(AperagPGError):
    """Work that failed because the database went away for a moment (a restart, a lost
    connection, a failover): running it again is expected to succeed, so DatabaseTask
    retries it."""


class LeaseTimeout(AperagPGError, TimeoutError):
    """A lease stayed held by another process for longer than the caller would wait."""


class LeaseLost(TransientFailure):
    """A lease expired and may have been taken over while its holder was paused or cut off:
    the holder's later writes were rolled back (fenced) and its task is retried."""


class DatabaseUnavailable(AperagPGError, psycopg2.OperationalError):
    """A new connection to PostgreSQL could not be opened."""


class SchemaError(AperagPGError):
    """The package's tables could not be created or migrated."""


class SchemaPrivilegeError(SchemaError):
    """The database role lacks a privilege that schema initialization needs."""


class InvalidInput(AperagPGError, ValueError):
    """Data a store was asked to write cannot be stored as given; nothing was written."""


class ModelsNotConfigured(ConfigError):
    """No LLM and embedding model was chosen for LightRAG; the message names the variables."""


class TaskKeepsCrashing(AperagPGError):
    """A task's worker process died (SIGKILL, out of memory) on every delivery of it, so it
    is not delivered again. The message names the task's work."""


class GraphMLError(AperagPGError, ValueError):
    """A GraphML file cannot be read or written, or a graph cannot be put into one: a
    missing or malformed file, or a stored value GraphML cannot hold."""


class VectorDimensionMismatch(InvalidInput):
    """A vector's length differs from the dimension of the table's vector column."""


class EmbeddingDimensionMismatch(ConfigError):
    """The configured embedding dimension does not fit LightRAG's vector tables."""


class ExtensionMissing(SchemaError):
    """A PostgreSQL extension the store needs (pgvector) is not installed on the server."""


class DocStatusNotFound(AperagPGError, KeyError):
    """update_doc_status_fields named a doc that does not exist (LightRAG:
    StorageRecordNotFoundError)."""


class MalformedCursor(InvalidInput):
    """A page cursor is not one this store or LightRAG made (LightRAG:
    StorageControlPlaneError)."""


class UnusableDocStatusRow(AperagPGError, ValueError):
    """A strict read met a stored row that cannot become a LightRAG record."""


class SourceConflictChanged(AperagPGError):
    """repair_source_conflict's compare-and-set failed: the candidates changed since the
    dry run (LightRAG: SourceConflictRepairCASError)."""
