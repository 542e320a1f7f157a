"""The statements of ``search``: the WHERE of an item search, and the nearest-vector
search that reads the ANN index first."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.store.base import SearchOp

from ..stores.vector_text import vector_literal
from . import namespaces, sql
from .config import VectorIndex
from .filters import filter_sql


def where_clause(
    op: SearchOp, prefix_column: str | None, omit_expired: bool
) -> tuple[str, list[Any]]:
    """The conditions on ``s`` (the store row) and their ``%s`` parameters: the namespace
    (on ``prefix_column``, if given), the filter, and liveness with ``omit_expired``."""
    conditions, params = filter_sql(op.filter)
    if prefix_column is not None:
        namespace, namespace_params = namespaces.prefix_condition(
            op.namespace_prefix, prefix_column
        )
        conditions.insert(0, namespace)
        params[:0] = namespace_params
    if omit_expired:
        conditions.append(sql.LIVE)
    return " AND ".join(conditions) or "true", params


def nearest_statement(
    index: VectorIndex,
    op: SearchOp,
    query: str,
    candidates: int | None,
    omit_expired: bool,
) -> tuple[str, dict[str, Any]]:
    """SEARCH_NEAREST for ``op`` (``{schema}`` still to fill) and its parameters.

    ``candidates``: how many nearest vectors the ANN index gives; None orders every vector
    of the namespace by an expression the index cannot serve: an exact scan."""
    namespace, namespace_params = namespaces.prefix_condition(op.namespace_prefix, "sv.prefix")
    where, params = where_clause(op, None, omit_expired)
    distance = f"sv.embedding {index.operator} %(query)s::{index.column_type}"
    statement = sql.fill(
        sql.SEARCH_NEAREST,
        distance=distance,
        # the bare distance is what the ANN index serves; an expression is exact
        order=distance if candidates else f"({distance}) + 0",
        namespace=_named(namespace, "ns", len(namespace_params)),
        where=_named(where, "f", len(params)),
        score=index.score("b.distance"),
    )
    values = {
        "query": query,
        "candidates": candidates,
        "limit": op.limit,
        "offset": op.offset,
        **{f"ns{n}": value for n, value in enumerate(namespace_params)},
        **{f"f{n}": value for n, value in enumerate(params)},
    }
    return statement, values


def query_text(index: VectorIndex, query: np.ndarray) -> str:
    """The query vector as the server reads it: exact float32 text for ``vector`` (what
    upstream's float8[] cast gives), decimal float64 for ``halfvec`` (rounded once, by the
    server, as upstream's is)."""
    if index.vector_type == "vector":
        return vector_literal(query.astype(np.float32))
    return "[" + ",".join(repr(float(x)) for x in query) + "]"


def _named(condition: str, name: str, count: int) -> str:
    """``condition`` with its ``%s`` placeholders as ``%(name0)s``, ``%(name1)s``, ..."""
    for n in range(count):
        condition = condition.replace("%s", f"%({name}{n})s", 1)
    return condition
