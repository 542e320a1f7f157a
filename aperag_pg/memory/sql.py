"""SQL of the long-term memory store: langgraph-checkpoint-postgres 3.2.0's store tables,
schema-qualified.

The migrations have upstream's effect and version numbers (``store_migrations`` 0-3,
``vector_migrations`` 0-2), so ``PostgresStore.setup()`` and ours each find the other's
tables up to date. They differ in form only: names carry ``{schema}`` (nothing depends on
``search_path``), and indexes are built with a plain ``CREATE INDEX`` inside the setup
transaction, so no caller needs an autocommit connection. One step is ours and has no
version: ``ttl_minutes`` becomes double precision, so a TTL of 0.5 minutes stays 0.5
(upstream's integer column rounds it); PostgresStore reads and writes that column as
before.

Statements are ``psycopg2.sql.SQL`` templates. ``compose`` fills ``{schema}`` and the other
named parts in one pass, each part a ``sql.Composable`` (names are ``sql.Identifier``);
values are always driver parameters, so no value is ever read as SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg2 import sql


def rows(row: sql.Composable, count: int) -> sql.Composed:
    """``row`` ``count`` times, comma-separated: a VALUES list whose values are the
    statement's parameters, in order."""
    return sql.SQL(", ").join([row] * count)


def conditions(parts: Sequence[sql.Composable], empty: str = "true") -> sql.Composable:
    """``parts`` joined by AND; ``empty`` (SQL) when there are none."""
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL(empty)


STORE_MIGRATIONS = tuple(
    sql.SQL(text)
    for text in (
        """
CREATE TABLE IF NOT EXISTS {schema}.store (
    prefix text NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key)
)""",
        "CREATE INDEX IF NOT EXISTS store_prefix_idx ON {schema}.store "
        "USING btree (prefix text_pattern_ops)",
        """
ALTER TABLE {schema}.store
ADD COLUMN IF NOT EXISTS expires_at TIMESTAMP WITH TIME ZONE,
ADD COLUMN IF NOT EXISTS ttl_minutes INT""",
        "CREATE INDEX IF NOT EXISTS idx_store_expires_at ON {schema}.store (expires_at) "
        "WHERE expires_at IS NOT NULL",
    )
)
# Version 0 of the vector migrations is the pgvector extension (pgvector.ensure_pgvector).
CREATE_STORE_VECTORS = sql.SQL("""
CREATE TABLE IF NOT EXISTS {schema}.store_vectors (
    prefix text NOT NULL,
    key text NOT NULL,
    field_name text NOT NULL,
    embedding {column_type},
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key, field_name),
    FOREIGN KEY (prefix, key) REFERENCES {schema}.store(prefix, key) ON DELETE CASCADE
)""")
CREATE_VECTOR_INDEX = sql.SQL(
    "CREATE INDEX IF NOT EXISTS store_vectors_embedding_idx ON {schema}.store_vectors "
    "USING {kind} (embedding {ops}){options}"
)
STORE_VECTOR_INDEX_VERSION = 2  # skipped (not recorded) for a "flat" index, as upstream

CREATE_VERSIONS = sql.SQL("CREATE TABLE IF NOT EXISTS {schema}.{table} (v INTEGER PRIMARY KEY)")
LATEST_VERSION = sql.SQL("SELECT max(v) FROM {schema}.{table}")
RECORD_VERSION = sql.SQL("INSERT INTO {schema}.{table} (v) VALUES (%s)")
FRACTIONAL_TTL = sql.SQL(
    "ALTER TABLE {schema}.store ALTER COLUMN ttl_minutes TYPE double precision"
)

# Where setup stands, from the catalog alone (a missing table cannot be read from):
# which tables exist, the type of ttl_minutes and of the embedding column.
STATE = """
SELECT to_regclass(%(store_migrations)s) IS NOT NULL,
       to_regclass(%(vector_migrations)s) IS NOT NULL,
       (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass(%(store)s) AND attname = 'ttl_minutes'
          AND NOT attisdropped),
       (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass(%(store_vectors)s) AND attname = 'embedding'
          AND NOT attisdropped)
"""

# -- writes ---------------------------------------------------------------------------

# One statement for all the puts of a batch: one round trip, atomic, no BEGIN/COMMIT. Its
# rows are VALUES lists of parameters (planned in half the time of unnest arrays). The TTL
# is kept exactly (seconds, not whole minutes); deleting an item deletes its vectors
# (cascade).
#
# Lock order, so that rival batches wait instead of deadlocking: every writer and every
# TTL refresh takes the row locks of the items it touches in one order, (prefix, key) by
# byte (COLLATE "C", Python's str order). Upserts alone insert their VALUES in that order.
# With deletes, ``locked`` first locks every existing item of the batch in that order, and
# the deletes and upserts start only after it (a one-time filter on it); deletes and
# upserts would each be ordered, but the one ahead of the other would not. The vector
# statements start after the upserts: they touch only the vectors of items locked already.
PUT = sql.SQL("WITH {parts} SELECT 1")
LOCK_ITEMS = sql.SQL("""locked AS (
    SELECT count(*) AS n FROM (
        SELECT FROM {schema}.store AS s WHERE (s.prefix, s.key) IN (VALUES {pairs})
        ORDER BY s.prefix COLLATE "C", s.key COLLATE "C"
        FOR UPDATE OF s
    ) AS l
)""")
AFTER_LOCKED = sql.SQL("(SELECT n FROM locked) IS NOT NULL")
DELETE_ITEMS = sql.SQL("""removed AS (
    DELETE FROM {schema}.store AS s
    WHERE (s.prefix, s.key) IN (VALUES {pairs}) AND {after}
)""")
UPSERT_ITEMS = sql.SQL("""items AS (
    INSERT INTO {schema}.store AS s
        (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes)
    SELECT * FROM (VALUES {rows}) AS v WHERE {after}
    ON CONFLICT (prefix, key) DO UPDATE
    SET value = EXCLUDED.value,
        updated_at = now(),
        expires_at = EXCLUDED.expires_at,
        ttl_minutes = EXCLUDED.ttl_minutes
    RETURNING 1
)""")
ITEM_ROW = sql.SQL(
    "(%s, %s, %s::jsonb, now(), now(), now() + make_interval(secs => %s::float8 * 60), %s::float8)"
)
AFTER_ITEMS = sql.SQL("(SELECT count(*) FROM items) IS NOT NULL")
# With an index, the same statement replaces the items' vectors: fields the new value no
# longer has, or a put with index=False, leave none behind (upstream keeps them, so the
# item would still be found by what it used to say).
DELETE_STALE_VECTORS = sql.SQL("""stale AS (
    DELETE FROM {schema}.store_vectors AS sv
    WHERE (sv.prefix, sv.key) IN (VALUES {pairs}) {keeping} AND {after}
)""")
KEEPING_FIELDS = sql.SQL("AND (sv.prefix, sv.key, sv.field_name) NOT IN (VALUES {triples})")
UPSERT_VECTORS = sql.SQL("""vectors AS (
    INSERT INTO {schema}.store_vectors AS sv
        (prefix, key, field_name, embedding, created_at, updated_at)
    SELECT * FROM (VALUES {rows}) AS v WHERE {after}
    ON CONFLICT (prefix, key, field_name) DO UPDATE
    SET embedding = EXCLUDED.embedding, updated_at = now()
)""")
VECTOR_ROW = sql.SQL("(%s, %s, %s, %s::{column_type}, now(), now())")
PAIR = sql.SQL("(%s, %s)")
TRIPLE = sql.SQL("(%s, %s, %s)")

# -- reads ----------------------------------------------------------------------------

GET_ITEMS = sql.SQL("""
SELECT s.prefix, s.key, s.value, s.created_at, s.updated_at, s.ttl_minutes IS NOT NULL AS has_ttl
FROM {schema}.store AS s
JOIN unnest(%s::text[], %s::text[]) AS r(p, k) ON s.prefix = r.p AND s.key = r.k
WHERE {live}
""")
# Reads with refresh_ttl push the expiry of the items read (and only those with a TTL).
# The rows are locked in the writers' order first: in a plain UPDATE ... FROM, the join
# would decide the order.
REFRESH_TTL = sql.SQL("""
WITH locked AS (
    SELECT s.prefix, s.key
    FROM {schema}.store AS s
    JOIN unnest(%s::text[], %s::text[]) AS r(p, k) ON s.prefix = r.p AND s.key = r.k
    WHERE s.ttl_minutes IS NOT NULL AND {live}
    ORDER BY s.prefix COLLATE "C", s.key COLLATE "C"
    FOR NO KEY UPDATE OF s
)
UPDATE {schema}.store AS s
SET expires_at = now() + make_interval(secs => s.ttl_minutes * 60)
FROM locked AS l
WHERE s.prefix = l.prefix AND s.key = l.key
""")
LIVE = sql.SQL("(s.expires_at IS NULL OR s.expires_at > now())")
ANY = sql.SQL("true")

SEARCH_ITEMS = sql.SQL("""
SELECT s.prefix, s.key, s.value, s.created_at, s.updated_at, NULL::float8 AS score,
       s.ttl_minutes IS NOT NULL AS has_ttl
FROM {schema}.store AS s
WHERE {where}
ORDER BY s.updated_at DESC
LIMIT %s OFFSET %s
""")
# Nearest vectors first, straight off the ANN index (ORDER BY the bare distance, ascending,
# LIMIT: the only form pgvector's index serves), then their items, filters and paging.
# ``candidates`` tells whether the index had more to give: if a filter dropped too many,
# the caller asks again for more. Upstream's query reads the index too, but keeps only
# 2 x limit + 1 vectors before its namespace and filter: short pages, empty deep offsets.
# Parameters, in order: those of distance, namespace and order, the candidates, those of
# where, limit, offset.
SEARCH_NEAREST = sql.SQL("""
WITH nearest AS MATERIALIZED (
    SELECT sv.prefix, sv.key, {distance} AS distance
    FROM {schema}.store_vectors AS sv
    WHERE {namespace}
    ORDER BY {order}
    LIMIT %s
),
best AS (
    SELECT prefix, key, min(distance) AS distance FROM nearest GROUP BY prefix, key
)
SELECT c.candidates, page.*
FROM (SELECT count(*) AS candidates FROM nearest) AS c
LEFT JOIN LATERAL (
    SELECT s.prefix, s.key, s.value, s.created_at, s.updated_at, {score} AS score,
           s.ttl_minutes IS NOT NULL AS has_ttl
    FROM best AS b
    JOIN {schema}.store AS s ON s.prefix = b.prefix AND s.key = b.key
    WHERE {where}
    ORDER BY b.distance, s.prefix, s.key
    LIMIT %s OFFSET %s
) AS page ON true
""")

SWEEP_EXPIRED = sql.SQL("""
DELETE FROM {schema}.store AS s
USING (
    SELECT prefix, key FROM {schema}.store
    WHERE expires_at IS NOT NULL AND expires_at < now()
    LIMIT %s
    FOR UPDATE SKIP LOCKED
) AS expired
WHERE s.prefix = expired.prefix AND s.key = expired.key
""")
