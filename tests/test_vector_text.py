"""vector_literal: pgvector reads back exactly the float32 values it was given."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperag_pg.pgvector import vector_literal

SPECIAL = np.array(
    [0.5, -2.5, 0.0, -0.0, 1e-45, -1e-45, np.finfo(np.float32).tiny, np.finfo(np.float32).max],
    dtype=np.float32,
)


@pytest.fixture(scope="module")
def cursor(base_settings):
    import psycopg2

    conn = psycopg2.connect(**base_settings.connect_kwargs(application_name="aperag_pg_tests"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield cur
    conn.close()


def read_back(cur, vector: np.ndarray) -> np.ndarray:
    """The float32 values the server stores for ``vector_literal(vector)``, by its own
    binary output, so no client-side parsing is involved."""
    cur.execute("SELECT vector_send(%s::vector)", (vector_literal(vector),))
    raw = bytes(cur.fetchone()[0])
    dim = int.from_bytes(raw[:2], "big")
    return np.frombuffer(raw[4:], dtype=">f4", count=dim).astype(np.float32)


def test_special_values_and_every_dimension_up_to_16000_are_exact(cursor):
    for vector in (SPECIAL, np.random.default_rng(1).standard_normal(16000).astype(np.float32)):
        assert read_back(cursor, vector).view(np.uint32).tolist() == vector.view(np.uint32).tolist()


def test_the_text_is_what_pgvector_reads_as_the_decimal_form(cursor):
    vector = np.random.default_rng(2).standard_normal(64).astype(np.float32)
    decimal = "[" + ",".join(repr(float(x)) for x in vector) + "]"
    cursor.execute("SELECT %s::vector = %s::vector", (vector_literal(vector), decimal))
    assert cursor.fetchone()[0] is True


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=40)
)
def test_any_finite_float32_round_trips(cursor, values):
    vector = np.array(values, dtype=np.float32)
    assert read_back(cursor, vector).view(np.uint32).tolist() == vector.view(np.uint32).tolist()
