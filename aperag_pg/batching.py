"""Batched writes in bounded chunks, inside the caller's transaction.

``execute_values_chunked`` is the general helper: ``execute_values`` builds one
multi-row VALUES statement per chunk, so no statement grows without bound.

``json_payloads`` + ``execute_json_payloads`` are the fast path for wide rows of plain
values: each chunk travels as ONE json parameter and the statement reads it with
``json_to_recordset``. The server then parses one short statement instead of thousands
of literals; for LightRAG's KV rows that is about 1.6x faster than VALUES.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, TypeVar

import psycopg2.extras

DEFAULT_CHUNK_SIZE = 500
T = TypeVar("T")


def as_columns(rows: Sequence[Sequence[Any]], width: int) -> tuple[list, ...]:
    """Rows to one list per column, bound to ``unnest(%s::text[], ...)``: a batch in one
    statement with a fixed number of parameters."""
    return tuple([row[i] for row in rows] for i in range(width))


def in_lock_order(rows: Iterable[T], key: Callable[[T], Any] | None = None) -> list[T]:
    """``rows`` sorted by ``key`` (their keys' code points): every batch write goes through
    this, so two transactions writing overlapping batches lock the rows in the same order
    and one waits for the other instead of both deadlocking."""
    return sorted(rows, key=key or _itself)


def _itself(row: Any) -> Any:
    return row


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split ``rows`` into lists of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def execute_values_chunked(
    cur: Any,
    sql: Any,
    rows: Iterable[Sequence[Any]],
    template: Any = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    fetch: bool = False,
) -> list[Any]:
    """Run ``execute_values(cur, sql, chunk, template)`` for each chunk of ``rows``.

    Returns the rows fetched from every chunk when ``fetch`` is true (for
    ``RETURNING``), else an empty list. Runs in the caller's transaction.
    """
    fetched: list[Any] = []
    for chunk in chunked(rows, chunk_size):
        result = psycopg2.extras.execute_values(
            cur, sql, chunk, template=template, page_size=len(chunk), fetch=fetch
        )
        if fetch:
            fetched.extend(result)
    return fetched


def json_payloads(
    records: Iterable[Mapping[str, Any]], chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[str]:
    """Each chunk of ``records`` as one JSON array, for a statement that reads it with
    ``json_to_recordset(%s::json) AS r(column type, ...)``.

    Everything is serialized before anything is sent, so a value JSON cannot hold
    (raises TypeError / ValueError, NaN included) fails before the first write.
    """
    return [
        json.dumps(chunk, separators=(",", ":"), allow_nan=False)
        for chunk in chunked(records, chunk_size)
    ]


def execute_json_payloads(cur: Any, sql: Any, payloads: Iterable[str]) -> None:
    """Run ``sql`` once per payload from :func:`json_payloads`, in the caller's transaction."""
    for payload in payloads:
        cur.execute(sql, (payload,))
