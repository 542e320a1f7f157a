"""Rows in PostgreSQL's binary COPY format, both ways. Written: pgvector vectors built by
numpy in one pass, the other columns (text, integers, text arrays, timestamps) packed per
value. Read (``copy_out``, ``read_rows``): stored vectors as their float4 bytes, where a
SELECT in psycopg2's text results sends them as hex text twice their size.

The pgvector package's psycopg2 adapter formats every float as text in Python, which for
1,000 vectors of 1,536 dimensions is 1.5 million ``repr`` calls. Binary COPY sends the
float32 bytes as they are.

pgvector's binary form of a vector (``vector_recv``): int16 dimensions, int16 unused (0),
then the float4 values, all big-endian. A COPY BINARY stream: the 11-byte signature, int32
flags, int32 header-extension length, then per row int16 field count and per field int32
length (-1: NULL) and bytes, then int16 -1.
"""

from __future__ import annotations

import datetime
import io
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

NULL = b"\xff\xff\xff\xff"
_POSTGRES_EPOCH = datetime.datetime(2000, 1, 1)  # binary timestamps count from here
_ELEMENT_TYPE_OIDS = {"text": 25, "varchar": 1043}  # fixed in PostgreSQL's catalog
_INT2 = struct.Struct(">h")
_INT4 = struct.Struct(">i")
_INT4_FIELD = struct.Struct(">ii")  # length 4, value
_INT8_FIELD = struct.Struct(">iq")  # length 8, value
_ARRAY_HEADER = struct.Struct(">iiiiii")  # length, ndim 1, has nulls, element oid, n, lbound


def vector_fields(vectors: np.ndarray) -> np.ndarray:
    """One COPY BINARY field per row of an (n, dim) float array: int32 length, then
    pgvector's binary vector. A C-contiguous (n, 8 + 4 * dim) uint8 array: row i is the
    field's bytes, so the whole array's bytes are the fields one after the other."""
    count, dim = vectors.shape
    fields = np.empty((count, 2 + dim), dtype=">f4")  # 8 header bytes, then the values
    raw = fields.view(np.uint8)
    header = _INT4.pack(4 + 4 * dim) + _INT2.pack(dim) + _INT2.pack(0)
    raw[:, :8] = np.frombuffer(header, dtype=np.uint8)
    fields[:, 2:] = vectors  # converted to big-endian float32 here, in C
    return raw


# -- whole rows ---------------------------------------------------------------------------


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _INT4.pack(len(data)) + data


def _int4(value: int) -> bytes:
    return _INT4_FIELD.pack(4, value)


def _timestamp(value: datetime.datetime) -> bytes:
    """A naive timestamp; the column's typmod (e.g. TIMESTAMP(0)) rounds it on receipt."""
    microseconds = (value - _POSTGRES_EPOCH) // datetime.timedelta(microseconds=1)
    return _INT8_FIELD.pack(8, microseconds)


def _text_array(element_oid: int) -> Callable[[Sequence[str | None]], bytes]:
    def encode(values: Sequence[str | None]) -> bytes:
        if not values:  # an empty array has no dimensions
            return _INT4.pack(12) + struct.pack(">iii", 0, 0, element_oid)
        items = [NULL if item is None else _text(item) for item in values]
        body = b"".join(items)
        has_nulls = int(any(item is None for item in values))
        header = _ARRAY_HEADER.pack(20 + len(body), 1, has_nulls, element_oid, len(items), 1)
        return header + body

    return encode


def field_encoder(sql_type: str) -> Callable[[Any], bytes]:
    """The binary COPY field of a value (None: NULL) for a column of ``sql_type``, one of
    the types LightRAG's vector tables use: varchar(n), text, integer, timestamp, and
    varchar(n)[] or text[]. Values are checked before (``values.check_column``)."""
    kind = sql_type.strip().split()[0].lower()
    base = kind.removesuffix("[]").split("(")[0]
    encode: Callable[[Any], bytes]
    if kind.endswith("[]") and base in _ELEMENT_TYPE_OIDS:
        encode = _text_array(_ELEMENT_TYPE_OIDS[base])
    elif base in _ELEMENT_TYPE_OIDS:
        encode = _text
    elif base in ("integer", "int4"):
        encode = _int4
    elif base == "timestamp":
        encode = _timestamp
    else:
        raise ValueError(f"no binary COPY encoder for column type {sql_type!r}")

    def encode_or_null(value: Any) -> bytes:
        return NULL if value is None else encode(value)

    return encode_or_null


def table_rows(
    encoders: Sequence[Callable[[Any], bytes]],
    rows: Sequence[Sequence[Any]],
    vectors: np.ndarray,
) -> bytes:
    """The COPY BINARY stream of whole rows: each row's values by ``encoders``, then its
    vector (row i of ``vectors``) as the last field."""
    fields = vector_fields(vectors)
    count = _INT2.pack(len(encoders) + 1)
    parts = [SIGNATURE]
    for values, vector in zip(rows, fields, strict=True):
        parts.append(count)
        parts.extend(encode(value) for encode, value in zip(encoders, values, strict=True))
        parts.append(vector)
    parts.append(TRAILER)
    return b"".join(parts)


# -- reading ------------------------------------------------------------------------------


def copy_out(cur: Any, statement: Any, params: Sequence[Any]) -> memoryview:
    """The COPY BINARY stream of ``COPY (query) TO STDOUT (FORMAT binary)``. COPY takes no
    bind parameters, so the driver fills ``params`` in (``mogrify``: the same quoting, in
    the same one pass, as the text ``execute`` would send)."""
    stream = io.BytesIO()
    cur.copy_expert(cur.mogrify(statement, params), stream)
    return stream.getbuffer()


def read_rows(data: memoryview) -> Iterator[list[memoryview | None]]:
    """The rows of a COPY BINARY stream, each a list of its fields' bytes (None: NULL)."""
    if bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        raise ValueError("not a COPY BINARY stream with an empty header extension")
    position = len(SIGNATURE)
    while True:
        (count,) = _INT2.unpack_from(data, position)
        position += 2
        if count == -1:
            return
        fields: list[memoryview | None] = []
        for _ in range(count):
            (length,) = _INT4.unpack_from(data, position)
            position += 4
            if length == -1:
                fields.append(None)
                continue
            fields.append(data[position : position + length])
            position += length
        yield fields
