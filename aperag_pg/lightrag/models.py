"""The LLM, embedding function and tokenizer LightRAG runs with in the Celery tasks and the demo.

Chosen explicitly, never by default:

- ``LLM_BINDING`` / ``EMBEDDING_BINDING`` = ``openai``, ``azure_openai`` or ``ollama``, with
  LightRAG's own variables (``aperag_pg.lightrag.bindings``); ``OPENAI_API_KEY`` alone
  still means openai;
- ``LLM_BINDING=standin``: the deterministic offline stand-ins of ``aperag_pg.lightrag.standins``
  (fake answers and 64-dimension hash embeddings), for demos and tests only;
- ``LIGHTRAG_FACTORY=package.module:function``: a team's own LightRAG arguments; the
  variables above then only supply what the factory leaves out.

Anything else, nothing included, raises ``ModelsNotConfigured`` naming the variables: a
production worker that forgot them must not fill its tables with fake vectors.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..environment import (
    EMBEDDING_BINDING,
    EMBEDDING_BINDING_API_KEY,
    EMBEDDING_BINDING_HOST,
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    LIGHTRAG_FACTORY,
    LLM_BINDING,
    LLM_BINDING_API_KEY,
    LLM_BINDING_HOST,
    LLM_MODEL,
    OPENAI_API_KEY,
)
from ..errors import ConfigError, ModelsNotConfigured
from ..settings import load_environment
from .bindings import (
    SUPPORTED,
    Endpoint,
    chosen_bindings,
    embedding_endpoint,
    embedding_function,
    llm_endpoint,
    llm_function,
    tiktoken_loads,
)
from .standins import lightrag_standins

STANDIN = "standin"  # LLM_BINDING / EMBEDDING_BINDING value of the offline stand-ins
STANDINS_LABEL = "offline stand-ins (deterministic LLM and embeddings)"
LLM_ROLE = "llm_model_func"
EMBEDDING_ROLE = "embedding_func"

NOTHING_CHOSEN = (
    f"no model for LightRAG: {LLM_BINDING} is unset and so is {OPENAI_API_KEY}. Set "
    f"{LLM_BINDING}={', '.join(SUPPORTED[:-1])} or {SUPPORTED[-1]} with LightRAG's own "
    f"variables ({LLM_MODEL}, {LLM_BINDING_HOST}, {LLM_BINDING_API_KEY}, {EMBEDDING_BINDING}, "
    f"{EMBEDDING_MODEL}, {EMBEDDING_DIM}, {EMBEDDING_BINDING_HOST}, {EMBEDDING_BINDING_API_KEY} "
    f"as needed), or just {OPENAI_API_KEY} for OpenAI; or {LIGHTRAG_FACTORY}="
    f"package.module:function for models of your own; or {LLM_BINDING}={STANDIN} for the "
    "offline stand-ins (fake answers and embeddings: demos and tests only)."
)


def lightrag_arguments(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The LightRAG keyword arguments of the tasks' instances, storages aside: those of
    LIGHTRAG_FACTORY when set (its model functions win), the configured models for the
    roles it leaves out."""
    return configured_models(environ)[0]


def configured_models(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(``lightrag_arguments``, a one-line description of where the models come from)."""
    env = load_environment(environ)
    factory = load_factory(env)
    if factory is None:
        return lightrag_models(env)
    arguments = factory()
    if not isinstance(arguments, Mapping):
        raise ConfigError(
            f"{LIGHTRAG_FACTORY}={env[LIGHTRAG_FACTORY]!r} returned "
            f"{type(arguments).__name__}, not a dict of LightRAG keyword arguments."
        )
    label = f"{LIGHTRAG_FACTORY}={env[LIGHTRAG_FACTORY].strip()}"
    missing = {LLM_ROLE, EMBEDDING_ROLE} - set(arguments)
    if not missing:
        return dict(arguments), label
    kwargs, rest = lightrag_models(env, roles=missing)
    return {**kwargs, **arguments}, f"{label}; {rest}"


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


def lightrag_models(
    environ: Mapping[str, str] | None = None,
    roles: set[str] | frozenset[str] = frozenset({LLM_ROLE, EMBEDDING_ROLE}),
) -> tuple[dict[str, Any], str]:
    """(LightRAG constructor arguments for ``roles``, a one-line description for logs, the
    demo and doctor); ModelsNotConfigured naming what to set."""
    env = load_environment(environ)
    llm_binding, embedding_binding = chosen_bindings(env)
    if (LLM_ROLE in roles and not llm_binding) or (
        EMBEDDING_ROLE in roles and not embedding_binding
    ):
        raise ModelsNotConfigured(NOTHING_CHOSEN)
    # The stand-ins serve a role only when its binding names them; never as a fallback.
    standins = lightrag_standins() if STANDIN in (llm_binding, embedding_binding) else {}
    kwargs: dict[str, Any] = {}
    described: list[str] = []
    llm = _real_llm_endpoint(env, llm_binding, required=LLM_ROLE in roles)
    if LLM_ROLE in roles:
        if llm_binding == STANDIN:
            kwargs[LLM_ROLE] = standins[LLM_ROLE]
            described.append("LLM: offline stand-in")
        else:
            assert llm is not None  # required: _real_llm_endpoint raised if it is missing
            kwargs.update(llm_function(llm, env))
            described.append(f"LLM: {llm.describe()}")
    if EMBEDDING_ROLE in roles:
        if embedding_binding == STANDIN:
            kwargs[EMBEDDING_ROLE] = standins[EMBEDDING_ROLE]
            described.append("embeddings: offline stand-in")
        else:
            endpoint, dim = embedding_endpoint(env, embedding_binding, llm)
            kwargs[EMBEDDING_ROLE] = embedding_function(endpoint, dim, env)
            described.append(f"embeddings: {endpoint.describe()}, {dim} dimensions")
    stand_in_only = llm_binding == embedding_binding == STANDIN
    kwargs.update({"tokenizer": standins["tokenizer"]} if llm_binding == STANDIN else _tokenizer())
    return kwargs, STANDINS_LABEL if stand_in_only else "; ".join(described)


def _real_llm_endpoint(env: Mapping[str, str], binding: str, required: bool) -> Endpoint | None:
    """The LLM's endpoint, or None for the stand-in. When a factory supplies the LLM, it is
    still looked for (an embedding endpoint on the same binding shares its host and key),
    but its absence is no error."""
    if binding == STANDIN or not binding:
        return None
    try:
        return llm_endpoint(env, binding)
    except ModelsNotConfigured:
        if required:
            raise
        return None


def _tokenizer() -> dict[str, Any]:
    """LightRAG's default tiktoken tokenizer when its encoding can be loaded; otherwise
    the byte tokenizer, which only makes chunks smaller."""
    return {} if tiktoken_loads() else {"tokenizer": lightrag_standins()["tokenizer"]}
