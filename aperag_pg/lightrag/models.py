"""The LLM, embedding function and tokenizer LightRAG runs with in the Celery tasks and the demo.

Chosen explicitly, never by default:

- ``LLM_BINDING=openai`` (or, as before, just ``OPENAI_API_KEY``): an OpenAI-compatible
  endpoint, with ``OPENAI_BASE_URL`` for other providers, ``LLM_MODEL``,
  ``EMBEDDING_MODEL`` and ``EMBEDDING_DIM``;
- ``LLM_BINDING=standin``: the deterministic offline stand-ins of ``aperag_pg.standins``
  (fake answers and 64-dimension hash embeddings), for demos and tests only.

Anything else, nothing included, raises ``ModelsNotConfigured`` naming the variables: a
production worker that forgot them must not fill its tables with fake vectors.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from typing import Any

from ..environment import (
    DEFAULT_EMBEDDING_DIM,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_LLM_MODEL,
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    LIGHTRAG_FACTORY,
    LLM_BINDING,
    LLM_MODEL,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
)
from ..errors import ConfigError, ModelsNotConfigured
from ..settings import load_environment
from ..standins import lightrag_standins

logger = logging.getLogger(__name__)

STANDIN = "standin"  # LLM_BINDING value of the offline stand-ins


def lightrag_arguments(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The LightRAG keyword arguments of the tasks' instances, storages aside: those of
    LIGHTRAG_FACTORY when set (its model functions win), else the configured models."""
    env = load_environment(environ)
    factory = load_factory(env)
    if factory is None:
        return lightrag_models(env)[0]
    arguments = factory()
    if not isinstance(arguments, Mapping):
        raise ConfigError(
            f"{LIGHTRAG_FACTORY}={env[LIGHTRAG_FACTORY]!r} returned "
            f"{type(arguments).__name__}, not a dict of LightRAG keyword arguments."
        )
    if {"llm_model_func", "embedding_func"} <= set(arguments):
        return dict(arguments)
    return {**lightrag_models(env)[0], **arguments}


def load_factory(environ: Mapping[str, str] | None = None) -> Any:
    """The function LIGHTRAG_FACTORY names, or None; ConfigError saying what is wrong."""
    env = load_environment(environ)
    path = env.get(LIGHTRAG_FACTORY, "").strip()
    if not path:
        return None
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"{LIGHTRAG_FACTORY}={path!r} is not 'package.module:function' (a colon between "
            "the module and the function that returns LightRAG's keyword arguments)."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{LIGHTRAG_FACTORY}={path!r}: module {module_name!r} cannot be imported "
            f"({exc}); is it installed, or on PYTHONPATH for the workers?"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(
            f"{LIGHTRAG_FACTORY}={path!r}: {module_name} has no function {attribute!r}."
        )
    return function


def lightrag_models(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(LightRAG constructor arguments, a one-line description for logs and the demo)."""
    env = load_environment(environ)
    binding = env.get(LLM_BINDING, "").strip().lower()
    api_key = env.get(OPENAI_API_KEY, "").strip()
    if binding == STANDIN:
        return lightrag_standins(), "offline stand-ins (deterministic LLM and embeddings)"
    if binding not in ("", "openai") or not api_key:
        raise ModelsNotConfigured(
            f"no model for LightRAG: {LLM_BINDING}={binding or '(unset)'}, "
            f"{OPENAI_API_KEY} {'set' if api_key else 'unset'}. Set {LLM_BINDING}=openai with "
            f"{OPENAI_API_KEY} (and {OPENAI_BASE_URL}, {LLM_MODEL}, {EMBEDDING_MODEL}, "
            f"{EMBEDDING_DIM} as needed), or {LLM_BINDING}={STANDIN} for the offline "
            "stand-ins (fake answers and embeddings: demos and tests only)."
        )
    from lightrag.llm.openai import openai_complete_if_cache, openai_embed
    from lightrag.utils import EmbeddingFunc

    base_url = env.get(OPENAI_BASE_URL, "").strip() or None
    llm_model = env.get(LLM_MODEL, "").strip() or DEFAULT_LLM_MODEL
    embedding_model = env.get(EMBEDDING_MODEL, "").strip() or DEFAULT_EMBEDDING_MODEL
    raw_dim = env.get(EMBEDDING_DIM, "").strip() or str(DEFAULT_EMBEDDING_DIM)
    if not raw_dim.isdigit() or not 1 <= int(raw_dim) <= 16000:
        raise ConfigError(
            f"{EMBEDDING_DIM}={raw_dim!r} is not a vector size: use a whole number from 1 to "
            "16000 matching the embedding model."
        )
    common = {"base_url": base_url, "api_key": api_key}

    async def llm(prompt: str, system_prompt: str | None = None, history_messages=None, **kw):
        return await openai_complete_if_cache(
            llm_model,
            prompt,
            system_prompt=system_prompt,
            history_messages=history_messages or [],
            **common,
            **kw,
        )

    embed = functools.partial(openai_embed.func, model=embedding_model, **common)
    kwargs = {
        "llm_model_func": llm,
        "embedding_func": EmbeddingFunc(
            embedding_dim=int(raw_dim), func=embed, model_name=embedding_model
        ),
        **_tokenizer(),
    }
    where = base_url or "api.openai.com"
    return kwargs, f"OpenAI-compatible endpoint {where}: {llm_model} + {embedding_model}"


def _tokenizer() -> dict[str, Any]:
    """LightRAG's default tiktoken tokenizer when its encoding can be loaded; otherwise
    (no network to fetch it) the byte tokenizer, which only makes chunks smaller.
    """
    try:
        import tiktoken

        tiktoken.get_encoding("cl100k_base")
        return {}
    except Exception:  # noqa: BLE001 - any failure to load means: fall back
        logger.warning("tiktoken's encoding is not available; counting UTF-8 bytes as tokens")
        return {"tokenizer": lightrag_standins()["tokenizer"]}
