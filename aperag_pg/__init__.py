"""aperag_pg: a synchronous PostgreSQL layer for Celery workers.

One thread-safe psycopg2 pool per worker process (``aperag_pg.pool``), LightRAG storages
on it (``aperag_pg.lightrag``) and a LangGraph checkpointer (``aperag_pg.checkpoint``).
"""

__version__ = "0.1.0"
