"""The store's index configuration: upstream's ``PostgresIndexConfig`` checked whole when
the store is made, and what follows from it (embeddings, fields, vector type, distance
operator and score, the ANN index DDL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.embeddings import Embeddings
from langgraph.store.base import ensure_embeddings, tokenize_path
from psycopg2 import sql

from ..errors import ConfigError
from ..pgvector import MAX_DIMENSIONS, MAX_INDEXED_DIMENSIONS

INDEX_KINDS = ("hnsw", "ivfflat", "flat")
# distance type -> (operator: smaller is nearer, the score from the distance ``d``, the
# operator class). Scores are upstream's: larger is more similar.
DISTANCES = {
    "cosine": ("<=>", sql.SQL("1 - {d}"), "cosine_ops"),
    "l2": ("<->", sql.SQL("-{d}"), "l2_ops"),
    "inner_product": ("<#>", sql.SQL("-{d}"), "ip_ops"),
}
INDEX_OPTIONS = {"hnsw": ("m", "ef_construction"), "ivfflat": ("lists",), "flat": ()}


@dataclass(frozen=True)
class VectorIndex:
    """A checked index configuration."""

    dims: int
    embeddings: Embeddings | None  # None: tables only (init-schema); put and search raise
    fields: tuple[tuple[str, Any], ...]  # (field path, its tokens, or "$" for the whole value)
    vectors_per_item: int  # upstream's estimate: how many vectors an item usually has
    vector_type: str
    kind: str
    options: tuple[tuple[str, int], ...]
    distance_type: str

    @property
    def column_type(self) -> str:
        """The embedding column's type as the catalog names it, e.g. ``vector(1536)``."""
        return f"{self.vector_type}({self.dims})"

    @property
    def column_type_sql(self) -> sql.Composable:
        """The embedding column's type in a statement."""
        return sql.SQL("{}({})").format(sql.Identifier(self.vector_type), sql.Literal(self.dims))

    @property
    def operator(self) -> sql.Composable:
        return sql.SQL(DISTANCES[self.distance_type][0])  # one of the constants above

    def score(self, distance: sql.Composable) -> sql.Composable:
        return DISTANCES[self.distance_type][1].format(d=distance)

    def index_ddl_parts(self) -> dict[str, sql.Composable]:
        """``kind``, ``ops`` and ``options`` of CREATE_VECTOR_INDEX."""
        options = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Literal(value))
            for name, value in self.options
        )
        return {
            "kind": sql.Identifier(self.kind),
            "ops": sql.Identifier(f"{self.vector_type}_{DISTANCES[self.distance_type][2]}"),
            "options": sql.SQL(" WITH ({})").format(options) if self.options else sql.SQL(""),
        }


def vector_index(config: Mapping[str, Any]) -> VectorIndex:
    """``config`` (a ``PostgresIndexConfig``) checked; ConfigError names what is wrong."""
    if not isinstance(config, Mapping):
        kind = type(config).__name__
        raise ConfigError(f"index must be a dict (PostgresIndexConfig), got {kind}")
    ann = dict(config.get("ann_index_config") or {})
    vector_type = ann.pop("vector_type", "vector")
    kind = ann.pop("kind", "hnsw")
    distance_type = config.get("distance_type", "cosine")
    _one_of("index ann_index_config.vector_type", vector_type, tuple(MAX_DIMENSIONS))
    _one_of("index ann_index_config.kind", kind, INDEX_KINDS)
    _one_of("index distance_type", distance_type, tuple(DISTANCES))
    dims = _dimension(config.get("dims"), vector_type, kind)
    fields = _fields(config.get("fields"))
    return VectorIndex(
        dims=dims,
        embeddings=None if config.get("embed") is None else ensure_embeddings(config["embed"]),
        fields=fields,
        vectors_per_item=sum(1 if tokens == "$" else len(tokens) for _, tokens in fields),
        vector_type=vector_type,
        kind=kind,
        options=_index_options(kind, ann),
        distance_type=distance_type,
    )


def _one_of(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{what} is {value!r}; use one of {', '.join(allowed)}.")


def _dimension(dims: Any, vector_type: str, kind: str) -> int:
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ConfigError(
            f"index dims is {dims!r}; set it to the embedding's dimension, a positive integer."
        )
    if dims > MAX_DIMENSIONS[vector_type]:
        raise ConfigError(
            f"index dims {dims} exceeds pgvector's {MAX_DIMENSIONS[vector_type]} for {vector_type}."
        )
    if kind != "flat" and dims > MAX_INDEXED_DIMENSIONS[vector_type]:
        raise ConfigError(
            f"index dims {dims} is above the {MAX_INDEXED_DIMENSIONS[vector_type]} dimensions "
            f"pgvector can index as {vector_type}; use ann_index_config vector_type "
            "'halfvec' (up to 4000) or kind 'flat' (no index, exact search)."
        )
    return dims


def _fields(fields: Any) -> tuple[tuple[str, Any], ...]:
    fields = fields or ["$"]
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields):
        raise ConfigError(f"index fields must be a list of field paths, got {fields!r}")
    return tuple((f, "$" if f == "$" else tokenize_path(f)) for f in fields)


def _index_options(kind: str, options: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The index's integer options, as upstream reads them (``nlist`` is ``lists``)."""
    if "nlist" in options:
        options.setdefault("lists", options.pop("nlist"))
    checked = []
    for name in INDEX_OPTIONS[kind]:
        if name not in options:
            continue
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"index ann_index_config.{name} is {value!r}; use a positive integer."
            )
        checked.append((name, value))
    return tuple(checked)
