"""A team's own LightRAG arguments, as LIGHTRAG_FACTORY names them in the tests."""

from __future__ import annotations

from aperag_pg.lightrag.standins import lightrag_standins


def build() -> dict:
    """Its own models (the stand-ins here) and its own chunking."""
    return {**lightrag_standins(), "chunk_token_size": 24, "chunk_overlap_token_size": 4}


def not_a_dict() -> list:
    return ["chunk_token_size", 24]


def unnamed_embedding() -> dict:
    """An embedding function without a model name, as many hand-written ones are: LightRAG
    then uses its vector tables without a model suffix, whatever the dimension."""
    from lightrag.utils import EmbeddingFunc

    from aperag_pg.lightrag.standins import standin_embed

    return {
        **lightrag_standins(),
        "embedding_func": EmbeddingFunc(embedding_dim=64, func=standin_embed),
    }


def chunking_only() -> dict:
    """Only chunking of its own: the models come from LLM_BINDING and friends."""
    return {"chunk_token_size": 24, "chunk_overlap_token_size": 4}
