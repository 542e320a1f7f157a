"""LightRAG's model bindings, configured with the variables of LightRAG's own server.

A team that runs the LightRAG server (for its WebUI) next to these workers keeps one
``.env`` for both: ``LLM_BINDING``, ``LLM_MODEL``, ``LLM_BINDING_HOST``,
``LLM_BINDING_API_KEY``, ``EMBEDDING_BINDING``, ``EMBEDDING_MODEL``, ``EMBEDDING_DIM``,
``EMBEDDING_BINDING_HOST``, ``EMBEDDING_BINDING_API_KEY``, and the binding options
LightRAG reads (``OPENAI_LLM_*``, ``OLLAMA_LLM_*``, ``OLLAMA_EMBEDDING_*``). The calls go
through ``lightrag.llm.openai`` / ``azure_openai`` / ``ollama``, as the server's do.

Where this differs from the server, it is stricter or keeps this package's older names:
``EMBEDDING_BINDING`` follows ``LLM_BINDING`` when unset (the server would fall back to
ollama); an embedding endpoint on the LLM's binding reuses the LLM's host and key;
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` still configure the openai binding; a custom
``EMBEDDING_MODEL`` needs ``EMBEDDING_DIM`` (the server's own guard).
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..environment import (
    AZURE_OPENAI_API_KEY,
    AZURE_OPENAI_API_VERSION,
    AZURE_OPENAI_ENDPOINT,
    DEFAULT_LLM_MODEL,
    EMBEDDING_BINDING,
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    EMBEDDING_TOKEN_LIMIT,
    LLM_BINDING,
    LLM_MODEL,
    OLLAMA_API_KEY,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
)
from ..errors import ConfigError, ModelsNotConfigured
from ..settings import redact_url
from ..stores.vector_tables import MAX_DIMENSION

logger = logging.getLogger(__name__)

OPENAI, AZURE_OPENAI, OLLAMA = "openai", "azure_openai", "ollama"
SUPPORTED = (OPENAI, AZURE_OPENAI, OLLAMA)
OPENAI_OLLAMA = "openai-ollama"  # LightRAG's shorthand: LLM on openai, embeddings on ollama


@dataclass(frozen=True)
class Binding:
    """What one binding needs, and where it looks when a variable is not set."""

    default_host: str | None
    host_variables: tuple[str, ...]  # read after <ROLE>_BINDING_HOST
    key_variables: tuple[str, ...]  # read after <ROLE>_BINDING_API_KEY
    needs_host: bool
    needs_key: bool
    default_llm_model: str | None  # None: LLM_MODEL must be set
    # (model, dimension) when EMBEDDING_MODEL is unset: LightRAG 1.5.7's openai_embed /
    # ollama_embed defaults (a test holds them equal). None: both must be set.
    default_embedding: tuple[str, int] | None


BINDINGS: dict[str, Binding] = {
    OPENAI: Binding(
        default_host=None,  # the openai client's own default, api.openai.com
        host_variables=(OPENAI_BASE_URL,),
        key_variables=(OPENAI_API_KEY,),
        needs_host=False,
        needs_key=True,
        default_llm_model=DEFAULT_LLM_MODEL,
        default_embedding=("text-embedding-3-small", 1536),
    ),
    AZURE_OPENAI: Binding(
        default_host=None,
        host_variables=(AZURE_OPENAI_ENDPOINT,),
        key_variables=(AZURE_OPENAI_API_KEY,),
        needs_host=True,
        needs_key=True,
        default_llm_model=None,  # deployment names are the team's own
        default_embedding=None,
    ),
    OLLAMA: Binding(
        default_host="http://localhost:11434",
        host_variables=(),
        key_variables=(OLLAMA_API_KEY,),
        needs_host=False,
        needs_key=False,
        default_llm_model="mistral-nemo:latest",  # the LightRAG server's default
        default_embedding=("bge-m3:latest", 1024),
    ),
}


@dataclass(frozen=True)
class Endpoint:
    """One role's model: binding, model name, where it is served, and the key (never shown)."""

    binding: str
    model: str
    host: str | None = field(repr=False)  # may carry credentials: describe() redacts them
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None  # azure_openai only

    def describe(self) -> str:
        """For logs and labels: credentials in the host URL are redacted."""
        return f"{self.binding} {self.model} at {redact_url(self.host or 'api.openai.com')}"


def chosen_bindings(env: Mapping[str, str]) -> tuple[str, str]:
    """(LLM binding, embedding binding), lower-cased; '' when nothing chooses one.

    ``OPENAI_API_KEY`` alone still means openai; EMBEDDING_BINDING follows LLM_BINDING.
    """
    llm = _get(env, LLM_BINDING).lower()
    embedding = _get(env, EMBEDDING_BINDING).lower()
    if llm == OPENAI_OLLAMA:
        return OPENAI, embedding or OLLAMA
    if not llm and _get(env, OPENAI_API_KEY):
        llm = OPENAI
    return llm, embedding or llm


def llm_endpoint(env: Mapping[str, str], binding: str) -> Endpoint:
    """The LLM's endpoint from LLM_* (and the binding's older names); ModelsNotConfigured
    naming what is missing."""
    spec = _spec(binding, LLM_BINDING)
    model = _get(env, LLM_MODEL) or spec.default_llm_model
    if not model:
        raise ModelsNotConfigured(
            f"{LLM_BINDING}={binding} needs {LLM_MODEL}: the model (for azure_openai, the "
            "deployment) that answers LightRAG's prompts."
        )
    return _endpoint(env, "LLM", binding, spec, model, shares_with=None)


def embedding_endpoint(
    env: Mapping[str, str], binding: str, llm: Endpoint | None
) -> tuple[Endpoint, int]:
    """(the embedding endpoint, its dimension) from EMBEDDING_*; an endpoint on the LLM's
    binding falls back to the LLM's host and key."""
    spec = _spec(binding, EMBEDDING_BINDING)
    model = _get(env, EMBEDDING_MODEL)
    default_model, default_dim = spec.default_embedding or ("", 0)
    raw_dim = _get(env, EMBEDDING_DIM)
    if raw_dim:
        dim = _dimension(raw_dim)
    elif default_model and model in ("", default_model):
        dim = default_dim
    else:
        raise ModelsNotConfigured(
            f"{EMBEDDING_BINDING}={binding} with {EMBEDDING_MODEL}="
            f"{model or '(unset)'} needs {EMBEDDING_DIM}: the size of the vectors that model "
            "returns (the vector tables are made for it)."
            + ("" if model else f" Set {EMBEDDING_MODEL} too (for azure_openai, the deployment).")
        )
    if not (model or default_model):
        raise ModelsNotConfigured(
            f"{EMBEDDING_BINDING}={binding} needs {EMBEDDING_MODEL} (the deployment that "
            "embeds LightRAG's chunks and entities)."
        )
    shares = llm if llm is not None and llm.binding == binding else None
    endpoint = _endpoint(env, "EMBEDDING", binding, spec, model or default_model, shares)
    return endpoint, dim


def llm_function(endpoint: Endpoint, env: Mapping[str, str]) -> dict[str, Any]:
    """LightRAG's ``llm_model_func`` (and ``llm_model_name``) calling ``endpoint`` through
    lightrag.llm's own functions, with the binding options of the environment."""
    if endpoint.binding == OLLAMA:
        from lightrag.llm.binding_options import OllamaLLMOptions
        from lightrag.llm.ollama import ensure_think_supported, ollama_model_complete

        options = binding_options(OllamaLLMOptions, env)
        ensure_think_supported(options, context=f"{LLM_BINDING}={OLLAMA}")
        # ollama_model_complete takes the model from LightRAG's llm_model_name.
        call = functools.partial(
            ollama_model_complete, host=endpoint.host, api_key=endpoint.api_key, options=options
        )
        return {"llm_model_func": _completion(call), "llm_model_name": endpoint.model}

    from lightrag.llm.binding_options import OpenAILLMOptions

    options = binding_options(OpenAILLMOptions, env)
    if endpoint.binding == AZURE_OPENAI:
        from lightrag.llm.azure_openai import azure_openai_complete_if_cache

        call = functools.partial(
            azure_openai_complete_if_cache, endpoint.model, api_version=endpoint.api_version
        )
    else:
        from lightrag.llm.openai import openai_complete_if_cache

        call = functools.partial(openai_complete_if_cache, endpoint.model)
    call = functools.partial(call, base_url=endpoint.host, api_key=endpoint.api_key)
    return {"llm_model_func": _completion(call, options), "llm_model_name": endpoint.model}


def embedding_function(endpoint: Endpoint, dim: int, env: Mapping[str, str]) -> Any:
    """LightRAG's ``EmbeddingFunc`` for ``endpoint``, named after its model, so LightRAG's
    vector tables carry the model and dimension in their names."""
    from lightrag.utils import EmbeddingFunc

    if endpoint.binding == OLLAMA:
        from lightrag.llm.binding_options import OllamaEmbeddingOptions
        from lightrag.llm.ollama import ollama_embed as provider

        call = functools.partial(
            provider.func,
            embed_model=endpoint.model,
            host=endpoint.host,
            api_key=endpoint.api_key,
            options=binding_options(OllamaEmbeddingOptions, env),
        )
    elif endpoint.binding == AZURE_OPENAI:
        from lightrag.llm.azure_openai import azure_openai_embed as provider

        call = functools.partial(
            provider.func,
            model=endpoint.model,
            base_url=endpoint.host,
            api_key=endpoint.api_key,
            api_version=endpoint.api_version,
        )
    else:
        from lightrag.llm.openai import openai_embed as provider

        call = functools.partial(
            provider.func, model=endpoint.model, base_url=endpoint.host, api_key=endpoint.api_key
        )
    if endpoint.binding != OLLAMA and not tiktoken_loads():
        call = _untruncated(call)
    return EmbeddingFunc(
        embedding_dim=dim,
        func=call,
        model_name=endpoint.model,
        max_token_size=_token_limit(env) or provider.max_token_size,
    )


@functools.cache
def tiktoken_loads() -> bool:
    """Whether tiktoken's cl100k_base encoding can be loaded (it is downloaded on first use,
    or read from TIKTOKEN_CACHE_DIR): LightRAG's default tokenizer and the openai bindings'
    truncation of embedding inputs need it."""
    try:
        import tiktoken

        tiktoken.get_encoding("cl100k_base")
        return True
    except Exception:  # noqa: BLE001 - any failure to load means: do without
        logger.warning(
            "tiktoken's cl100k_base encoding cannot be loaded (no network, no "
            "TIKTOKEN_CACHE_DIR): tokens are counted as UTF-8 bytes and embedding inputs "
            "are not truncated to %s",
            EMBEDDING_TOKEN_LIMIT,
        )
        return False


def _untruncated(call: Any) -> Any:
    """``call`` without the max_token_size LightRAG would pass: the openai bindings truncate
    with tiktoken, and an encoding that cannot be loaded would fail every embedding."""

    async def embed(texts: list[str], **kwargs: Any) -> Any:
        return await call(texts, **kwargs)

    return embed


def _token_limit(env: Mapping[str, str]) -> int | None:
    raw = _get(env, EMBEDDING_TOKEN_LIMIT)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"{EMBEDDING_TOKEN_LIMIT}={raw!r} is not valid: give the embedding model's input "
            "limit in tokens, a whole number of at least 1 (unset: the binding's default)."
        )
    return int(raw)


def binding_options(options_class: Any, env: Mapping[str, str]) -> dict[str, Any]:
    """The options of one LightRAG ``BindingOptions`` class (e.g. ``OLLAMA_LLM_NUM_CTX``)
    set in ``env``, parsed by LightRAG's own parser, so a value means what it means to the
    LightRAG server. Unset options are left out, as the server leaves them out."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    options_class.add_args(parser)
    argv, variables = [], {}
    for item in options_class.args_env_name_type_value():
        if item["env_name"] in env:
            argv.append(f"--{item['argname']}={env[item['env_name']]}")
            variables[f"--{item['argname']}"] = item["env_name"]
    try:
        parsed = parser.parse_args(argv)
    except (argparse.ArgumentError, ValueError) as exc:
        argument = getattr(exc, "argument_name", None) or ""
        variable = next((v for a, v in variables.items() if a in argument), argument)
        raise ConfigError(f"{variable} is not valid: {exc}") from None
    return options_class.options_dict(parsed)


def _completion(call: Any, options: Mapping[str, Any] | None = None) -> Any:
    """An async ``llm_model_func`` around ``call``; the binding options win over LightRAG's
    per-call keywords, as in the LightRAG server."""

    async def complete(prompt: str, system_prompt: str | None = None, history_messages=None, **kw):
        return await call(
            prompt,
            system_prompt=system_prompt,
            history_messages=history_messages or [],
            **{**kw, **(options or {})},
        )

    return complete


def _endpoint(
    env: Mapping[str, str],
    role: str,
    binding: str,
    spec: Binding,
    model: str,
    shares_with: Endpoint | None,
) -> Endpoint:
    host_variable, key_variable = f"{role}_BINDING_HOST", f"{role}_BINDING_API_KEY"
    host = _first(env, (host_variable,)) or (shares_with.host if shares_with else None)
    host = host or _first(env, spec.host_variables) or spec.default_host
    key = _first(env, (key_variable,)) or (shares_with.api_key if shares_with else None)
    key = key or _first(env, spec.key_variables)
    if spec.needs_host and not host:
        raise ModelsNotConfigured(
            f"{role}_BINDING={binding} needs {_either(host_variable, spec.host_variables)}: "
            "the endpoint, e.g. https://<resource>.openai.azure.com."
        )
    if spec.needs_key and not key:
        raise ModelsNotConfigured(
            f"{role}_BINDING={binding} needs {_either(key_variable, spec.key_variables)}: "
            "the API key of the endpoint."
        )
    version = (_get(env, AZURE_OPENAI_API_VERSION) or None) if binding == AZURE_OPENAI else None
    return Endpoint(binding, model, host, key or None, version)


def _spec(binding: str, variable: str) -> Binding:
    if binding not in BINDINGS:
        raise ModelsNotConfigured(
            f"{variable}={binding!r} is not a binding the aperag_pg tasks know: use "
            f"{', '.join(SUPPORTED)} (or standin for the offline stand-ins), or "
            "LIGHTRAG_FACTORY=package.module:function for any other model LightRAG can call."
        )
    return BINDINGS[binding]


def _dimension(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DIMENSION:
        raise ConfigError(
            f"{EMBEDDING_DIM}={raw!r} is not a vector size: use a whole number from 1 to "
            f"{MAX_DIMENSION} matching the embedding model."
        )
    return int(raw)


def _either(first: str, others: tuple[str, ...]) -> str:
    return " or ".join((first, *others))


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((value for value in (_get(env, name) for name in names) if value), "")


def _get(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()
