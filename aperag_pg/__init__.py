"""aperag_pg: a synchronous PostgreSQL layer for Celery workers.

One thread-safe psycopg2 pool per worker process, and on it LightRAG's storages
(``aperag_pg.lightrag``, extra ``lightrag``; its WebUI with extra ``webui``), a LangGraph
checkpointer (``aperag_pg.checkpoint``) and a LangGraph long-term memory store
(``aperag_pg.memory``, both extra ``langgraph``)::

    from aperag_pg import PostgreSQLSyncConnectionManager, install_worker_signals

    install_worker_signals()  # each worker process opens its pool, and closes it
    with PostgreSQLSyncConnectionManager.get_connection() as conn:
        ...
"""

from .errors import (
    AperagPGError,
    ConfigError,
    DatabaseUnavailable,
    ExtensionMissing,
    InvalidInput,
    PoolClosed,
    PoolError,
    PoolTimeout,
    SchemaError,
    SchemaPrivilegeError,
    TaskKeepsCrashing,
    TransactionAborted,
    VectorDimensionMismatch,
)
from .manager import PostgreSQLSyncConnectionManager
from .settings import PostgresSettings
from .worker import DatabaseTask, install_worker_signals, run_async

__version__ = "0.1.0"

__all__ = [
    "AperagPGError",
    "ConfigError",
    "DatabaseTask",
    "DatabaseUnavailable",
    "ExtensionMissing",
    "InvalidInput",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "PostgreSQLSyncConnectionManager",
    "PostgresSettings",
    "SchemaError",
    "SchemaPrivilegeError",
    "TaskKeepsCrashing",
    "TransactionAborted",
    "VectorDimensionMismatch",
    "install_worker_signals",
    "run_async",
]
