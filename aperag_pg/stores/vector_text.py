"""pgvector's text form of a float32 vector, exact, built by numpy without a per-float
Python call.

psycopg2 sends parameters as text, and formatting 1,536 floats in decimal (what the
pgvector package's adapter does, one ``repr`` each) costs about 0.6 ms per query vector.
pgvector reads each element with C's ``strtof``, which also reads hexadecimal floats
(C99), so each float32 is written as ``±0x<24-bit mantissa>p±<exponent>``: every element
the same 15 bytes, made by array operations, and exact by construction.
"""

from __future__ import annotations

import numpy as np

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
