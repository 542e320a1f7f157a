"""The LangGraph checkpointer on the worker pool, interchangeable with PostgresSaver.

``PGSyncCheckpointSaver`` stores checkpoints in langgraph-checkpoint-postgres'
tables through aperag_pg's per-process psycopg2 pool; ``retention`` deletes old
threads and history (the ``aperag_pg.prune_checkpoints`` Celery task runs it).
"""

from __future__ import annotations

from .migrate import setup_checkpoint_tables
from .saver import PGSyncCheckpointSaver

__all__ = ["PGSyncCheckpointSaver", "setup_checkpoint_tables"]
