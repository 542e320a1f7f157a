"""Deterministic, offline stand-ins for an LLM, an embedding model and a tokenizer.

They let LightRAG run end to end with no network and no model download (tests,
``make demo``). They are not models: the "LLM" extracts capitalised words as
entities and links neighbours, the "embedding" hashes words into a fixed-size
vector, and the tokenizer counts UTF-8 bytes. Same input, same output, always.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

TUPLE = "<|#|>"
COMPLETE = "<|COMPLETE|>"
EMBEDDING_DIM = 64
EMBEDDING_MODEL = "standin-hash"

_INPUT_TEXT = re.compile(r"---Input Text---\s*```\s*\n(.*?)\n```", re.S)
_USER_QUERY = re.compile(r"User Query:\s*(.*)")
_PROPER_NOUN = re.compile(r"\b[A-Z][a-z]{2,}(?:\s+[A-Z][a-z]{2,})*\b")
_WORD = re.compile(r"\w+")


class ByteTokenizer:
    """UTF-8 bytes as tokens: needs no vocabulary file, safe from any thread."""

    def encode(self, content: str) -> list[int]:
        return list(content.encode("utf-8"))

    def decode(self, tokens: list[int]) -> str:
        return bytes(tokens).decode("utf-8", errors="ignore")


def _entities(text: str, limit: int = 8) -> list[str]:
    seen: dict[str, None] = {}
    for match in _PROPER_NOUN.findall(text):
        seen.setdefault(match, None)
    return list(seen)[:limit]


def _extraction(text: str) -> str:
    names = _entities(text)
    lines = [
        f"entity{TUPLE}{name}{TUPLE}concept{TUPLE}{name} is mentioned in the text: "
        f"{text[:80].strip()}"
        for name in names
    ]
    lines += [
        f"relation{TUPLE}{a}{TUPLE}{b}{TUPLE}co-occurrence{TUPLE}{a} and {b} appear together."
        for a, b in zip(names, names[1:], strict=False)
    ]
    return "\n".join([*lines, COMPLETE])


def _keywords(query: str) -> str:
    low = _entities(query) or [w for w in _WORD.findall(query) if len(w) > 3][:3]
    high = [w.lower() for w in _WORD.findall(query) if len(w) > 5][:3]
    return json.dumps({"high_level_keywords": high, "low_level_keywords": low})


async def standin_llm(
    prompt: str,
    system_prompt: str | None = None,
    history_messages: list[dict[str, Any]] | None = None,
    **_kwargs: Any,
) -> str:
    """Answers LightRAG's prompts (extraction, gleaning, keywords, summaries, answers)."""
    full = f"{system_prompt or ''}\n{prompt}"
    if "identify and extract any missed" in prompt:  # gleaning pass: nothing more
        return COMPLETE
    if (text := _INPUT_TEXT.search(prompt)) is not None:
        return _extraction(text.group(1))
    if "high_level_keywords" in full and (query := _USER_QUERY.search(full)) is not None:
        return _keywords(query.group(1))
    if "Description List" in full:
        return " ".join(full.split("Description List:", 1)[1].split())[:300]
    return "Stand-in answer (no LLM configured): the retrieved context is above."


def embed_texts(texts: list[str], dim: int = EMBEDDING_DIM) -> np.ndarray:
    """Hashed bag of words, L2-normalised: texts sharing words get similar vectors."""
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vectors[row, int.from_bytes(digest[:4], "little") % dim] += 1.0
            vectors[row, int.from_bytes(digest[4:], "little") % dim] += 0.5
        norm = float(np.linalg.norm(vectors[row]))
        vectors[row] = vectors[row] / norm if norm else 1.0 / np.sqrt(dim)
    return vectors


async def standin_embed(texts: list[str], **_kwargs: Any) -> np.ndarray:
    return embed_texts(texts)


def lightrag_standins() -> dict[str, Any]:
    """LightRAG constructor arguments that wire in the three stand-ins."""
    from lightrag.utils import EmbeddingFunc, Tokenizer

    return {
        "llm_model_func": standin_llm,
        "embedding_func": EmbeddingFunc(
            embedding_dim=EMBEDDING_DIM,
            func=standin_embed,
            model_name=EMBEDDING_MODEL,
            max_token_size=8192,
        ),
        "tokenizer": Tokenizer(model_name="standin-bytes", tokenizer=ByteTokenizer()),
    }
