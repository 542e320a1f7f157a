"""The offline stand-in models behind a hosted model's latency, as LIGHTRAG_FACTORY names
them (``devtools.slow_models:lightrag_arguments``): STANDIN_LLM_DELAY_S per LLM request
(default 0.2 s) and STANDIN_EMBED_DELAY_S per embedding request (default 0.05 s), slept in
the worker's event loop, so that work is paced by "the model" and not by this machine's
CPUs (the multi-host tests and bench/scale_out.py)."""

from __future__ import annotations

import asyncio
import os

from aperag_pg.lightrag.standins import lightrag_standins


def lightrag_arguments() -> dict:
    from lightrag.utils import EmbeddingFunc

    arguments = lightrag_standins()
    llm_delay = float(os.environ.get("STANDIN_LLM_DELAY_S", "0.2"))
    embed_delay = float(os.environ.get("STANDIN_EMBED_DELAY_S", "0.05"))
    standin_llm, standin_embedding = arguments["llm_model_func"], arguments["embedding_func"]

    async def llm(*args, **kwargs) -> str:
        await asyncio.sleep(llm_delay)
        return await standin_llm(*args, **kwargs)

    async def embed(texts, **kwargs):
        await asyncio.sleep(embed_delay)
        return await standin_embedding.func(texts, **kwargs)

    embedding = EmbeddingFunc(
        embedding_dim=standin_embedding.embedding_dim,
        func=embed,
        model_name=standin_embedding.model_name,
        max_token_size=standin_embedding.max_token_size,
    )
    return {**arguments, "llm_model_func": llm, "embedding_func": embedding}
