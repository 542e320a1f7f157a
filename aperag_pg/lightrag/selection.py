"""Storage selection by environment variable: LIGHTRAG_*_STORAGE -> LightRAG keyword arguments.

    rag = LightRAG(working_dir=..., **lightrag_storage_kwargs(), ...)

with, for example, ``LIGHTRAG_KV_STORAGE=PGSyncKVStorage``. Variables left unset keep
LightRAG's defaults; switching back to ``PGKVStorage`` etc. reads the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..environment import STORAGE_VARIABLES
from ..errors import ConfigError
from ..settings import load_environment
from .registry import register


def lightrag_storage_kwargs(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``kv_storage`` / ``vector_storage`` / ``doc_status_storage`` / ``graph_storage``
    arguments named by the environment (and ``.env``), validated against LightRAG's registry.
    """
    from lightrag.kg import STORAGE_IMPLEMENTATIONS

    register()
    env = load_environment(environ)
    kwargs: dict[str, str] = {}
    for variables, keyword, kind in STORAGE_VARIABLES:
        variable = next((v for v in variables if env.get(v, "").strip()), None)
        if variable is None:
            continue
        name = env[variable].strip()
        valid = STORAGE_IMPLEMENTATIONS[kind]["implementations"]
        if name not in valid:
            raise ConfigError(
                f"{variable}={name!r} is not a known {kind.lower().replace('_', ' ')} "
                f"implementation: valid names are {', '.join(valid)}."
            )
        kwargs[keyword] = name
    return kwargs
