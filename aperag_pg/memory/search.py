"""The statements of ``search``: the WHERE of an item search, and the nearest-vector
search that reads the ANN index first."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.store.base import SearchOp
from psycopg2 import sql as pgsql

from ..pgvector import vector_literal
from ..schema import in_schema
from . import namespaces, sql
from .config import VectorIndex
from .filters import filter_sql

_DISTANCE = pgsql.SQL("sv.embedding {operator} %s::{column_type}")
_EXACT = pgsql.SQL("({}) + 0")  # an expression: no index serves it, so the scan is exact


def where_clause(
    op: SearchOp, prefix_column: pgsql.Composable | None, omit_expired: bool
) -> tuple[pgsql.Composable, list[Any]]:
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
    return sql.conditions(conditions), params


def nearest_statement(
    index: VectorIndex,
    op: SearchOp,
    schema: str,
    query: str,
    candidates: int | None,
    omit_expired: bool,
) -> tuple[pgsql.Composed, list[Any]]:
    """SEARCH_NEAREST for ``op`` on ``schema``, and its parameters.

    ``candidates``: how many nearest vectors the ANN index gives; None orders every vector
    of the namespace by an expression the index cannot serve: an exact scan."""
    namespace, namespace_params = namespaces.prefix_condition(
        op.namespace_prefix, pgsql.Identifier("sv", "prefix")
    )
    where, params = where_clause(op, None, omit_expired)
    distance = _DISTANCE.format(operator=index.operator, column_type=index.column_type_sql)
    statement = in_schema(
        sql.SEARCH_NEAREST,
        schema,
        distance=distance,
        # the bare distance is what the ANN index serves
        order=distance if candidates else _EXACT.format(distance),
        namespace=namespace,
        where=where,
        score=index.score(pgsql.Identifier("b", "distance")),
    )
    values = [query, *namespace_params, query, candidates, *params, op.limit, op.offset]
    return statement, values


def query_text(index: VectorIndex, query: np.ndarray) -> str:
    """The query vector as the server reads it: exact float32 text for ``vector`` (what
    upstream's float8[] cast gives), decimal float64 for ``halfvec`` (rounded once, by the
    server, as upstream's is)."""
    if index.vector_type == "vector":
        return vector_literal(query.astype(np.float32))
    return "[" + ",".join(repr(float(x)) for x in query) + "]"
