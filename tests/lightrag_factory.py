"""A team's own LightRAG arguments, as LIGHTRAG_FACTORY names them in the tests."""

from __future__ import annotations

from aperag_pg.standins import lightrag_standins


def build() -> dict:
    """Its own models (the stand-ins here) and its own chunking."""
    return {**lightrag_standins(), "chunk_token_size": 24, "chunk_overlap_token_size": 4}


def not_a_dict() -> list:
    return ["chunk_token_size", 24]
