"""LightRAG storages on aperag_pg's per-process sync pool (needs the ``lightrag`` extra)."""

from .registry import register
from .storages import (
    PGSyncDocStatusStorage,
    PGSyncGraphStorage,
    PGSyncKVStorage,
    PGSyncVectorStorage,
)

__all__ = [
    "PGSyncDocStatusStorage",
    "PGSyncGraphStorage",
    "PGSyncKVStorage",
    "PGSyncVectorStorage",
    "register",
]
