"""One helper for every batched write: ``execute_values`` in bounded chunks.

A single ``execute_values`` call builds one SQL statement per page; with
thousands of rows that statement grows to megabytes and the server parses it
in one go. Chunking keeps each statement bounded while the caller's transaction
still makes the whole batch atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import psycopg2.extras

DEFAULT_CHUNK_SIZE = 500


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
