"""pgvector, for every wing: the extension (enabled through the DDL runner, its version),
its types' limits, and vectors in its two wire forms.

Text (``vector_literal``): psycopg2 sends parameters as text, and formatting 1,536 floats
in decimal (what the pgvector package's adapter does, one ``repr`` each) costs about
0.6 ms per query vector. pgvector reads each element with C's ``strtof``, which also reads
hexadecimal floats (C99), so each float32 is written as ``±0x<24-bit mantissa>p±<exponent>``:
every element the same 15 bytes, made by array operations, and exact by construction.

Binary (``vector_values``): a vector field of ``COPY ... FORMAT binary`` read back.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np
import psycopg2.errors

from .cursors import Manager
from .errors import ExtensionMissing, first_line
from .schema import apply_ddl

PGVECTOR_INSTALLED = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
CREATE_PGVECTOR = "CREATE EXTENSION IF NOT EXISTS vector"
MAX_DIMENSIONS = {"vector": 16000, "halfvec": 16000}  # a column type -> its largest dimension
MAX_INDEXED_DIMENSIONS = {"vector": 2000, "halfvec": 4000}  # the largest an ANN index takes
_VECTOR_HEADER = 4  # binary form: int16 dimensions, int16 unused


def ensure_pgvector(manager: Manager) -> tuple[int, ...]:
    """Enable pgvector in the database unless it is (no privilege is needed to use an
    installed extension) and return its version, e.g. (0, 8, 1)."""
    versions: list[tuple[int, ...]] = []  # each version read; the last one is current

    def installed(cur: Any) -> bool:
        versions.append(_pgvector_version(cur))
        return bool(versions[-1])

    def create(cur: Any) -> None:
        _create_pgvector(manager)(cur)
        installed(cur)

    apply_ddl("the pgvector extension", None, installed, create, manager)
    return versions[-1]


def _pgvector_version(cur: Any) -> tuple[int, ...]:
    """pgvector's version, () when it is not installed."""
    cur.execute(PGVECTOR_INSTALLED)
    row = cur.fetchone()
    return () if row is None else version_tuple(row[0])


def _create_pgvector(manager: Manager) -> Any:
    def create(cur: Any) -> None:
        try:
            cur.execute(CREATE_PGVECTOR)
        except (psycopg2.errors.FeatureNotSupported, psycopg2.errors.UndefinedFile) as exc:
            raise ExtensionMissing(
                f"the pgvector extension is not installed on the PostgreSQL server "
                f"{manager.settings().describe()} ({first_line(exc)}). Fix: install pgvector "
                "on the server (e.g. the postgresql-<version>-pgvector package, or run the "
                "pgvector/pgvector:pg<version> Docker image), then run again."
            ) from exc
        except psycopg2.errors.InsufficientPrivilege as exc:
            settings = manager.settings()
            raise ExtensionMissing(
                f"the pgvector extension is not enabled in database {settings.database!r} "
                f"and role {settings.user!r} may not enable it ({first_line(exc)}). Fix: "
                f'have a superuser run CREATE EXTENSION vector in database "'
                f'{settings.database}" once, then run again.'
            ) from exc

    return create


def version_tuple(text: str) -> tuple[int, ...]:
    """ "0.8.1" -> (0, 8, 1); parts that are not numbers end it."""
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


_WIDTH = 15  # "+0x800000p-023," : sign, 0x, 6 hex digits, p, signed 3-digit exponent, comma
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MANTISSA_BITS = 23
_EXPONENT_BIAS = 127


def vector_literal(vector: np.ndarray) -> str:
    """``vector`` (1-D float32, finite) as pgvector's input text, e.g. ``[+0x800000p-024]``
    for 0.5; the server reads back exactly these float32 values (-0.0 and subnormals too)."""
    bits = np.ascontiguousarray(vector, dtype=np.float32).view(np.uint32).astype(np.int64)
    biased = (bits >> _MANTISSA_BITS) & 0xFF
    fraction = bits & ((1 << _MANTISSA_BITS) - 1)
    normal = biased > 0
    # value = mantissa * 2**exponent; subnormals (and zero) have no implicit leading bit
    mantissa = np.where(normal, fraction | (1 << _MANTISSA_BITS), fraction)
    exponent = np.where(normal, biased, 1) - _EXPONENT_BIAS - _MANTISSA_BITS
    text = np.empty((len(bits), _WIDTH), dtype=np.uint8)
    text[:, 0] = np.where(bits >> 31, ord("-"), ord("+"))
    text[:, 1], text[:, 2] = ord("0"), ord("x")
    for digit in range(6):
        text[:, 3 + digit] = _HEX[(mantissa >> (4 * (5 - digit))) & 0xF]
    text[:, 9] = ord("p")
    text[:, 10] = np.where(exponent < 0, ord("-"), ord("+"))
    magnitude = np.abs(exponent)
    for digit, scale in enumerate((100, 10, 1)):
        text[:, 11 + digit] = ord("0") + magnitude // scale % 10
    text[:, 14] = ord(",")
    return "[" + text.tobytes()[:-1].decode("ascii") + "]"


def vector_values(field: memoryview) -> list[float]:
    """A pgvector vector's binary field as the list of floats its float4s are, bit for bit
    (array's tolist makes the floats faster than numpy's)."""
    values = array.array("f")
    values.frombytes(field[_VECTOR_HEADER:])
    if sys.byteorder == "little":
        values.byteswap()  # the wire is big-endian
    return values.tolist()
