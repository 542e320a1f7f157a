"""Helpers for the LangGraph store tests: PGSyncStore and langgraph-checkpoint-postgres'
PostgresStore on fresh schemas, a deterministic offline embedding model, the similarity
each distance type should report, and reads of the TTL columns through a superuser
connection."""

from __future__ import annotations

import contextlib
import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from langchain_core.embeddings import Embeddings
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg2 import sql

from .checkpoint_support import psycopg3_conninfo
from .polling import wait_until

# The two implementations the behaviour tests run on: ours, and the store it stands in for.
OURS = "PGSyncStore"
THEIRS = "PostgresStore"
IMPLS = (OURS, THEIRS)

DIMS = 64

# One case per pgvector storage type, distance and ANN kind, each pair at least once.
VECTOR_CONFIGS = (
    ("vector", "cosine", "hnsw"),
    ("vector", "l2", "ivfflat"),
    ("vector", "inner_product", "flat"),
    ("halfvec", "cosine", "flat"),
    ("halfvec", "l2", "hnsw"),
    ("halfvec", "inner_product", "ivfflat"),
)


class LetterEmbeddings(Embeddings):
    """Offline embeddings: each character has a fixed pseudo-random direction (seeded by
    the character, so it doesn't depend on what was embedded before), and a text is the
    unit-length, frequency-weighted sum of its characters' directions. Texts sharing
    characters are similar; the same text always gets the same vector."""

    def __init__(self, dims: int = DIMS, seed: int = 7) -> None:
        self.dims = dims
        self.seed = seed
        self.calls: list[list[str]] = []
        self._directions: dict[str, list[float]] = {}

    def _direction(self, char: str) -> list[float]:
        if char not in self._directions:
            rng = random.Random(f"{self.seed}:{ord(char)}")
            self._directions[char] = [rng.gauss(0.0, 1.0) for _ in range(self.dims)]
        return self._directions[char]

    def vector(self, text: str) -> list[float]:
        counts = Counter(text)
        if not counts:
            return [0.0] * self.dims
        total = sum(counts.values())
        out = [0.0] * self.dims
        for char, n in counts.items():
            for i, x in enumerate(self._direction(char)):
                out[i] += x * n / total
        norm = math.sqrt(sum(x * x for x in out))
        return [x / norm for x in out] if norm else out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)


def similarity(distance_type: str, a: list[float], b: list[float]) -> float:
    """The score a store reports for vectors ``a`` and ``b``: cosine similarity, the inner
    product, or the negated euclidean distance."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if distance_type == "inner_product":
        return dot
    if distance_type == "l2":
        return -math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms


def index_config(
    embeddings: Embeddings,
    vector_type: str = "vector",
    distance_type: str = "cosine",
    kind: str = "hnsw",
    fields: list[str] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "dims": DIMS,
        "embed": embeddings,
        "distance_type": distance_type,
        "ann_index_config": {"kind": kind, "vector_type": vector_type},
    }
    if fields is not None:
        config["fields"] = fields
    return config


def store_in(schema: str, **kwargs: Any):
    """A PGSyncStore on ``schema`` (the pool must be open), set up."""
    from aperag_pg.memory import PGSyncStore

    store = PGSyncStore(schema=schema, **kwargs)
    store.setup()
    return store


@contextlib.contextmanager
def upstream_store_in(settings, schema: str, **kwargs: Any) -> Iterator[Any]:
    """langgraph-checkpoint-postgres' PostgresStore on ``schema``, set up, as its
    documentation builds one (autocommit, prepare_threshold=0, dict rows). Its SQL names
    tables unqualified, so the connection's search_path puts them in ``schema``; public
    stays on the path for pgvector's types."""
    from langgraph.store.postgres import PostgresStore

    conninfo = psycopg3_conninfo(settings, options=f"-c search_path={schema},public")
    with psycopg.Connection.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
        store = PostgresStore(conn, **kwargs)
        store.setup()
        yield store


class StoreFactory:
    """Builds stores of one implementation on one schema; ``close()`` releases them."""

    def __init__(self, impl: str, schema: str, settings) -> None:
        self.impl = impl
        self.schema = schema
        self.settings = settings
        self._stack = contextlib.ExitStack()

    @property
    def ours(self) -> bool:
        return self.impl == OURS

    def __call__(self, **kwargs: Any):
        if self.ours:
            return store_in(self.schema, **kwargs)
        return self._stack.enter_context(upstream_store_in(self.settings, self.schema, **kwargs))

    def close(self) -> None:
        self._stack.close()


# -- reads through the superuser connection ----------------------------------------------


def server_now(admin_conn) -> datetime:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]


def row_ttl(admin_conn, schema: str, namespace: tuple[str, ...], key: str) -> tuple | None:
    """(expires_at, ttl_minutes) of one item, or None when the row is gone."""
    with admin_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT expires_at, ttl_minutes FROM {} WHERE prefix = %s AND key = %s").format(
                sql.Identifier(schema, "store")
            ),
            (".".join(namespace), key),
        )
        row = cur.fetchone()
    return None if row is None else (row[0], row[1])


def count_rows(admin_conn, schema: str, table: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
        return cur.fetchone()[0]


def wait_until_expired(admin_conn, schema: str, namespace: tuple[str, ...], key: str) -> None:
    """Returns once the server's clock is past the item's expires_at."""
    expires_at = row_ttl(admin_conn, schema, namespace, key)[0]
    assert expires_at is not None, f"{namespace}/{key} has no expiry"
    wait_until(
        lambda: server_now(admin_conn) > expires_at,
        f"the server's clock passes {namespace}/{key}'s expires_at",
        timeout=10,
    )


def wait_for_clock_tick(admin_conn, since: datetime) -> datetime:
    """Returns the server's clock once it is later than ``since``."""
    return wait_until(
        lambda: (now := server_now(admin_conn)) > since and now,
        "the server's clock moves on",
        timeout=10,
    )
