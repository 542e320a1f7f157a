"""Building LightRAG instances for the tests, offline, with any storages."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from lightrag import LightRAG

from aperag_pg.lightrag import register
from aperag_pg.settings import PostgresSettings
from aperag_pg.standins import lightrag_standins

DOCS = [
    "Alice Johnson founded Acme Robotics in Berlin. Acme Robotics builds warehouse robots "
    "together with Bob Smith, who designs their grippers.",
    "Bob Smith leads research at Acme Robotics. He previously worked at Globex Corporation in "
    "Paris, where Carol White ran the logistics division.",
    "Globex Corporation acquired Initech Systems. Initech Systems is based in Austin and "
    "partners with Acme Robotics on fleet software written by Carol White.",
    "Dana Lee audits Initech Systems every spring. Her reports reach Alice Johnson and the "
    "board of Globex Corporation.",
]
FILE_PATHS = [f"docs/report_{i}.txt" for i in range(len(DOCS))]

OURS = {
    "kv_storage": "PGSyncKVStorage",
    "vector_storage": "PGSyncVectorStorage",
    "doc_status_storage": "PGSyncDocStatusStorage",
}
LIGHTRAGS_PG = {
    "kv_storage": "PGKVStorage",
    "vector_storage": "PGVectorStorage",
    "doc_status_storage": "PGDocStatusStorage",
}
LOCAL = {
    "kv_storage": "JsonKVStorage",
    "vector_storage": "NanoVectorDBStorage",
    "doc_status_storage": "JsonDocStatusStorage",
}

# Namespaces of a LightRAG instance, by attribute, that the storages above serve.
KV_ATTRIBUTES = (
    "full_docs",
    "text_chunks",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
    "llm_response_cache",
)
VECTOR_ATTRIBUTES = ("chunks_vdb", "entities_vdb", "relationships_vdb")


def make_rag(
    working_dir: Path, workspace: str, storages: dict[str, str], models: dict | None = None
) -> LightRAG:
    register()
    return LightRAG(
        working_dir=str(working_dir),
        workspace=workspace,
        vector_db_storage_cls_kwargs={"cosine_better_than_threshold": 0.2},
        **storages,
        **(models or lightrag_standins()),
    )


def new_workspace(prefix: str = "ws") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@contextmanager
def postgres_env(settings: PostgresSettings):
    """POSTGRES_* for LightRAG's own PG storages (they read os.environ), restored after."""
    values = settings.to_env()
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
