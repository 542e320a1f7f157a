"""pgvector rows in PostgreSQL's binary COPY format, built by numpy in one pass.

The pgvector package's psycopg2 adapter formats every float as text in Python, which for
1,000 vectors of 1,536 dimensions is 1.5 million ``repr`` calls. Binary COPY sends the
float32 bytes as they are: each row here is ``(ord int4, content_vector vector)``, all rows
the same size, so the whole stream is one numpy structured array turned into bytes.

pgvector's binary form of a vector (``vector_recv``): int16 dimensions, int16 unused (0),
then the float4 values, all big-endian. A COPY BINARY stream: the 11-byte signature, int32
flags, int32 header-extension length, then per row int16 field count and per field int32
length and bytes, then int16 -1.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

# The temporary table an upsert copies its vectors into: created in the upsert's own
# transaction and dropped at its end, so nothing outlives it (PgBouncer-safe).
COPY_TABLE = "aperag_vector_rows"
CREATE_COPY_TABLE = (
    f"CREATE TEMP TABLE {COPY_TABLE} (ord int4 NOT NULL, content_vector vector NOT NULL) "
    "ON COMMIT DROP"
)
EMPTY_COPY_TABLE = f"TRUNCATE {COPY_TABLE}"
_COPY = f"COPY {COPY_TABLE} (ord, content_vector) FROM STDIN (FORMAT BINARY)"
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"


def vector_fields(vectors: np.ndarray) -> np.ndarray:
    """One COPY BINARY field per row of an (n, dim) float array: int32 length, then
    pgvector's binary vector, as a structured array (``.tobytes()`` is the fields)."""
    count, dim = vectors.shape
    layout = [("size", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))]
    fields = np.empty(count, dtype=layout)
    fields["size"] = 4 + 4 * dim
    fields["dim"] = dim
    fields["unused"] = 0
    fields["values"] = vectors  # converted to big-endian float32 here, in C
    return fields


def vector_rows(vectors: np.ndarray, first_ord: int = 0) -> bytes:
    """The COPY BINARY stream of rows ``(ord, vector)`` for an (n, dim) float array, with
    ``ord`` counting from ``first_ord``: what the temporary table of an upsert receives."""
    fields = vector_fields(vectors)
    layout = [("fields", ">i2"), ("ord_size", ">i4"), ("ord", ">i4"), ("vector", fields.dtype)]
    rows = np.empty(len(fields), dtype=layout)
    rows["fields"] = 2
    rows["ord_size"] = 4
    rows["ord"] = np.arange(first_ord, first_ord + len(fields), dtype=np.int64)
    rows["vector"] = fields
    return SIGNATURE + rows.tobytes() + TRAILER


def copy_vector_rows(cur: Any, vectors: np.ndarray, first_ord: int = 0) -> None:
    """COPY ``vectors`` into the upsert's temporary table (made with CREATE_COPY_TABLE)."""
    cur.copy_expert(_COPY, io.BytesIO(vector_rows(vectors, first_ord)))
