"""What every LightRAG instance of aperag_pg is built with: the Celery tasks' and LightRAG's
own server's (``server.py``), so that both read and write the same tables through the same
storages, with the same models and retrieval settings, and answer alike.

Workspace names are held to the rule of LightRAG's server: letters, digits and underscores.
The server rewrites any other character to "_" (with a warning), so a workspace the
workers filled as "team-a" would show in the WebUI as an empty "team_a". Such names are
refused with the name to use instead; mapping them would silently merge "team-a" into
"team_a".
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..environment import LIGHTRAG_WORKING_DIR
from ..errors import InvalidInput
from ..settings import load_environment
from .models import lightrag_arguments
from .registry import FACADES
from .selection import lightrag_storage_kwargs

DEFAULT_STORAGES = {
    "kv_storage": FACADES["KV_STORAGE"],
    "vector_storage": FACADES["VECTOR_STORAGE"],
    "doc_status_storage": FACADES["DOC_STATUS_STORAGE"],
    "graph_storage": FACADES["GRAPH_STORAGE"],
}
COSINE_THRESHOLD = 0.2  # LightRAG server's default (COSINE_THRESHOLD)
DEFAULT_WORKING_DIR = "run/lightrag"
_SERVER_WORKSPACE = re.compile(r"[A-Za-z0-9_]*")  # lightrag.api.config keeps these as given


def check_workspace_name(workspace: str) -> str:
    """``workspace`` if LightRAG's server can show it as it is; else InvalidInput naming
    the name to use."""
    if _SERVER_WORKSPACE.fullmatch(workspace):
        return workspace
    suggestion = re.sub(r"[^A-Za-z0-9_]", "_", workspace)
    raise InvalidInput(
        f"LightRAG workspace {workspace!r} has characters other than letters, digits and "
        "underscores: LightRAG's server and WebUI would rewrite it to "
        f"{suggestion!r} and show another, empty workspace. Use a name such as {suggestion!r}."
    )


def process_working_dir(environ: Mapping[str, str] | None = None) -> Path:
    """LightRAG's working directory for this process, ``LIGHTRAG_WORKING_DIR/<host>-<pid>``:
    keyed by host and pid because scaled containers share pid numbers, and may share a
    volume. With the PGSync storages nothing is kept there."""
    env = load_environment(environ)
    base = Path(env.get(LIGHTRAG_WORKING_DIR) or DEFAULT_WORKING_DIR)
    working_dir = base / f"{socket.gethostname()}-{os.getpid()}"
    working_dir.mkdir(parents=True, exist_ok=True)
    return working_dir


def instance_arguments(workspace: str) -> dict[str, Any]:
    """LightRAG's keyword arguments for ``workspace``: storages (LIGHTRAG_*_STORAGE, else
    the PGSync ones), models (``models.py``) and retrieval settings."""
    return {
        "working_dir": str(process_working_dir()),
        "workspace": check_workspace_name(workspace),
        "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": COSINE_THRESHOLD},
        **{**DEFAULT_STORAGES, **lightrag_storage_kwargs()},
        **lightrag_arguments(),
    }
