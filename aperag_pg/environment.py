"""Every environment variable aperag_pg reads, named in one place.

Modules read their variables through the names defined here (or, for POSTGRES_*, through
``PostgresSettings``), so ``known_variables()`` stays true and deployment files (the
docker-compose file, .env examples) can be checked against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_URL = "REDIS_URL"
CELERY_BROKER_URL = "CELERY_BROKER_URL"
CELERY_RESULT_BACKEND = "CELERY_RESULT_BACKEND"
# Seconds Redis waits for an unacknowledged task before it delivers it again: longer than
# the longest task, or a task still running is delivered a second time.
CELERY_VISIBILITY_TIMEOUT = "CELERY_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT = 7200
LIGHTRAG_WORKING_DIR = "LIGHTRAG_WORKING_DIR"
# Seconds a workspace's writer lease outlives its last renewal (renewed every third of
# it): how long a writer that died on another host, or is paused, keeps others waiting.
LIGHTRAG_WRITER_LEASE_TTL = "LIGHTRAG_WRITER_LEASE_TTL"
DEFAULT_WRITER_LEASE_TTL = 60.0
MIN_WRITER_LEASE_TTL = 3.0
# LightRAG's storages by name (aperag_pg.lightrag.selection):
# (variables, first one wins) -> (LightRAG keyword, LightRAG registry kind)
STORAGE_VARIABLES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("LIGHTRAG_KV_STORAGE",), "kv_storage", "KV_STORAGE"),
    (
        ("LIGHTRAG_VECTOR_STORAGE", "LIGHTRAG_VECTOR_DB_STORAGE"),
        "vector_storage",
        "VECTOR_STORAGE",
    ),
    (("LIGHTRAG_DOC_STATUS_STORAGE",), "doc_status_storage", "DOC_STATUS_STORAGE"),
    (("LIGHTRAG_GRAPH_STORAGE",), "graph_storage", "GRAPH_STORAGE"),
)
# LightRAG's models (aperag_pg.lightrag.models and .bindings), by the LightRAG server's own
# names: a binding ("openai", "azure_openai", "ollama", or "standin" for the offline
# stand-ins) per role; nothing chosen is an error, never a silent fake.
LLM_BINDING = "LLM_BINDING"
LLM_MODEL = "LLM_MODEL"
LLM_BINDING_HOST = "LLM_BINDING_HOST"
LLM_BINDING_API_KEY = "LLM_BINDING_API_KEY"
EMBEDDING_BINDING = "EMBEDDING_BINDING"
EMBEDDING_MODEL = "EMBEDDING_MODEL"
EMBEDDING_DIM = "EMBEDDING_DIM"
EMBEDDING_TOKEN_LIMIT = "EMBEDDING_TOKEN_LIMIT"
EMBEDDING_BINDING_HOST = "EMBEDDING_BINDING_HOST"
EMBEDDING_BINDING_API_KEY = "EMBEDDING_BINDING_API_KEY"
# "package.module:function" returning LightRAG keyword arguments of a team's own (model
# functions, chunking, addon_params); the tasks add the storages.
LIGHTRAG_FACTORY = "LIGHTRAG_FACTORY"
# The bindings' own names, read when the LightRAG names above are unset.
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
AZURE_OPENAI_ENDPOINT = "AZURE_OPENAI_ENDPOINT"
AZURE_OPENAI_API_KEY = "AZURE_OPENAI_API_KEY"
AZURE_OPENAI_API_VERSION = "AZURE_OPENAI_API_VERSION"
OLLAMA_API_KEY = "OLLAMA_API_KEY"
DEFAULT_LLM_MODEL = "gpt-4o-mini"
MODEL_VARIABLES = (
    LLM_BINDING,
    LLM_MODEL,
    LLM_BINDING_HOST,
    LLM_BINDING_API_KEY,
    EMBEDDING_BINDING,
    EMBEDDING_MODEL,
    EMBEDDING_DIM,
    EMBEDDING_TOKEN_LIMIT,
    EMBEDDING_BINDING_HOST,
    EMBEDDING_BINDING_API_KEY,
    LIGHTRAG_FACTORY,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
    AZURE_OPENAI_ENDPOINT,
    AZURE_OPENAI_API_KEY,
    AZURE_OPENAI_API_VERSION,
    OLLAMA_API_KEY,
)
# LangGraph checkpoint retention (aperag_pg.checkpoint.retention); unset: keep everything.
CHECKPOINT_THREAD_TTL_DAYS = "CHECKPOINT_THREAD_TTL_DAYS"
CHECKPOINT_HISTORY_TTL_DAYS = "CHECKPOINT_HISTORY_TTL_DAYS"
# How often Celery beat sends aperag_pg.sweep_store (expired LangGraph memory items).
STORE_SWEEP_INTERVAL_MINUTES = "STORE_SWEEP_INTERVAL_MINUTES"
DEFAULT_STORE_SWEEP_INTERVAL_MINUTES = 5.0
# LightRAG's server and WebUI on the workers' tables (aperag_pg.lightrag.server): where it
# listens, which workspace it shows, and LightRAG's own authentication, required off
# loopback (accounts and the secret that signs their tokens, or one API key).
WEBUI_HOST = "WEBUI_HOST"
DEFAULT_WEBUI_HOST = "127.0.0.1"
WEBUI_PORT = "WEBUI_PORT"
DEFAULT_WEBUI_PORT = 9621  # LightRAG server's own default
WORKSPACE = "WORKSPACE"
AUTH_ACCOUNTS = "AUTH_ACCOUNTS"
TOKEN_SECRET = "TOKEN_SECRET"
LIGHTRAG_API_KEY = "LIGHTRAG_API_KEY"
WEBUI_VARIABLES = (WEBUI_HOST, WEBUI_PORT, WORKSPACE, AUTH_ACCOUNTS, TOKEN_SECRET, LIGHTRAG_API_KEY)
# Alternatives to the individual POSTGRES_* fields (see PostgresSettings.from_env).
POSTGRES_ALIASES = ("POSTGRES_DB", "POSTGRES_DSN", "DATABASE_URL")


def celery_urls(env: Mapping[str, str]) -> tuple[str, str]:
    """(broker, result backend): CELERY_BROKER_URL / CELERY_RESULT_BACKEND, else REDIS_URL."""
    redis_url = env.get(REDIS_URL) or DEFAULT_REDIS_URL
    return env.get(CELERY_BROKER_URL) or redis_url, env.get(CELERY_RESULT_BACKEND) or redis_url


def visibility_timeout(env: Mapping[str, str]) -> int:
    """CELERY_VISIBILITY_TIMEOUT in seconds, or ConfigError naming the value."""
    from .errors import ConfigError

    text = (env.get(CELERY_VISIBILITY_TIMEOUT) or "").strip()
    if not text:
        return DEFAULT_VISIBILITY_TIMEOUT
    if not text.isdigit() or int(text) < 60:
        raise ConfigError(
            f"{CELERY_VISIBILITY_TIMEOUT}={text!r} is not valid: give whole seconds, at least "
            "60 and longer than your longest task (default "
            f"{DEFAULT_VISIBILITY_TIMEOUT})."
        )
    return int(text)


def writer_lease_ttl(env: Mapping[str, str]) -> float:
    """LIGHTRAG_WRITER_LEASE_TTL in seconds (default 60), or ConfigError naming the value:
    at least 3, and shorter than CELERY_VISIBILITY_TIMEOUT (a task redelivered after its
    worker died must not find the dead writer's lease still standing for longer than Redis
    itself waited)."""
    from .errors import ConfigError

    text, seconds = _number(env, LIGHTRAG_WRITER_LEASE_TTL)
    if not text:
        return DEFAULT_WRITER_LEASE_TTL
    visibility = visibility_timeout(env)
    if not math.isfinite(seconds) or not MIN_WRITER_LEASE_TTL <= seconds < visibility:
        raise ConfigError(
            f"{LIGHTRAG_WRITER_LEASE_TTL}={text!r} is not valid: give seconds, at least "
            f"{MIN_WRITER_LEASE_TTL:g} and less than {CELERY_VISIBILITY_TIMEOUT} "
            f"({visibility}) (default {DEFAULT_WRITER_LEASE_TTL:g})."
        )
    return seconds


def store_sweep_interval(env: Mapping[str, str]) -> float:
    """STORE_SWEEP_INTERVAL_MINUTES (default 5), or ConfigError naming the value."""
    from .errors import ConfigError

    text, minutes = _number(env, STORE_SWEEP_INTERVAL_MINUTES)
    if not text:
        return DEFAULT_STORE_SWEEP_INTERVAL_MINUTES
    if not math.isfinite(minutes) or minutes <= 0:
        raise ConfigError(
            f"{STORE_SWEEP_INTERVAL_MINUTES}={text!r} is not valid: give a positive number of "
            f"minutes (default {DEFAULT_STORE_SWEEP_INTERVAL_MINUTES:g})."
        )
    return minutes


def _number(env: Mapping[str, str], name: str) -> tuple[str, float]:
    """(the variable's text, stripped; its number, NaN when it is not one)."""
    text = (env.get(name) or "").strip()
    try:
        return text, float(text)
    except ValueError:
        return text, math.nan


def known_variables() -> set[str]:
    """The names of all variables the package reads."""
    from .settings import GROUPS

    names = {
        f.metadata["env"]
        for group in GROUPS.values()
        for f in dataclasses.fields(group)
        if "env" in f.metadata
    }
    names.update(POSTGRES_ALIASES)
    names.update(v for variables, _, _ in STORAGE_VARIABLES for v in variables)
    names.update((REDIS_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND, LIGHTRAG_WORKING_DIR))
    names.add(LIGHTRAG_WRITER_LEASE_TTL)
    names.add(CELERY_VISIBILITY_TIMEOUT)
    names.update(MODEL_VARIABLES)
    names.update(WEBUI_VARIABLES)
    names.update((CHECKPOINT_THREAD_TTL_DAYS, CHECKPOINT_HISTORY_TTL_DAYS))
    names.add(STORE_SWEEP_INTERVAL_MINUTES)
    return names
