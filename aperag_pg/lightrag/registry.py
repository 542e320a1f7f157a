"""Make LightRAG accept our storage names: ``LightRAG(kv_storage="PGSyncKVStorage", ...)``."""

from __future__ import annotations

FACADES = {
    "KV_STORAGE": "PGSyncKVStorage",
    "VECTOR_STORAGE": "PGSyncVectorStorage",
    "DOC_STATUS_STORAGE": "PGSyncDocStatusStorage",
    "GRAPH_STORAGE": "PGSyncGraphStorage",
}
_MODULE = "aperag_pg.lightrag.storages"


def register() -> None:
    """Add the PGSync* names to LightRAG's storage registries. Idempotent.

    LightRAG resolves a storage name through ``lightrag.kg.STORAGES`` (name -> module)
    and checks it against ``STORAGE_IMPLEMENTATIONS``; both are plain dicts we extend.
    """
    from lightrag import kg

    for kind, name in FACADES.items():
        implementations = kg.STORAGE_IMPLEMENTATIONS[kind]["implementations"]
        if name not in implementations:
            implementations.append(name)
        kg.STORAGES[name] = _MODULE
        # Connection settings come from POSTGRES_* with defaults; nothing is mandatory.
        kg.STORAGE_ENV_REQUIREMENTS.setdefault(name, [])
