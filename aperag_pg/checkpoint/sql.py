"""SQL of the checkpointer: the tables of langgraph-checkpoint-postgres 3.2.0, schema-qualified.

Every statement names its tables as ``{schema}.<table>``; :func:`rendered` puts the
schema in, quoted by ``psycopg2.sql.Identifier``, so nothing depends on
``search_path``. Values are always ``%s`` parameters. Templates are ``SQL.format``
strings: a literal brace is doubled.

Reads look each blob up by its primary key ``(thread_id, checkpoint_ns,
channel, version)`` from the checkpoint's ``channel_versions`` (``LATERAL ...
LIMIT 1`` keeps the planner from joining all blobs of the thread), so a read
costs the size of the checkpoint, not the length of the thread. Every public read
or write is one statement: one round trip and, in PostgreSQL, one transaction. The
PL/pgSQL functions that get_tuple, put and put_writes call are in ``functions.py``.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from ..schema import in_schema

# -- tables: the migrations of langgraph-checkpoint-postgres, same versions ---------

# Position = version recorded in checkpoint_migrations, exactly as PostgresSaver.setup()
# numbers them, so either saver finds the other's schema up to date. Versions 6-8 use
# CREATE INDEX CONCURRENTLY there, which cannot run in a transaction (hence its need for
# autocommit); here they are plain CREATE INDEX under the advisory lock, same names.
MIGRATIONS: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS {schema}.checkpoint_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
)""",
    """CREATE TABLE IF NOT EXISTS {schema}.checkpoint_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
)""",
    """CREATE TABLE IF NOT EXISTS {schema}.checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    blob BYTEA NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
)""",
    "ALTER TABLE {schema}.checkpoint_blobs ALTER COLUMN blob DROP NOT NULL",
    "SELECT 1",  # upstream's no-op placeholder, kept so the numbering matches
    "CREATE INDEX IF NOT EXISTS checkpoints_thread_id_idx ON {schema}.checkpoints (thread_id)",
    "CREATE INDEX IF NOT EXISTS checkpoint_blobs_thread_id_idx "
    "ON {schema}.checkpoint_blobs (thread_id)",
    "CREATE INDEX IF NOT EXISTS checkpoint_writes_thread_id_idx "
    "ON {schema}.checkpoint_writes (thread_id)",
    "ALTER TABLE {schema}.checkpoint_writes "
    "ADD COLUMN IF NOT EXISTS task_path TEXT NOT NULL DEFAULT ''",
)

MIGRATIONS_TABLE = "checkpoint_migrations"
SELECT_MIGRATION_VERSION = "SELECT max(v) FROM {schema}.checkpoint_migrations"
INSERT_MIGRATION_VERSION = "INSERT INTO {schema}.checkpoint_migrations (v) VALUES (%s)"

# Whether setup() has work to do: the migration table, and each function (by the
# schema-qualified signatures of functions.FUNCTION_SIGNATURES).
SCHEMA_STATE = """
SELECT to_regclass(%s) IS NOT NULL, array_agg(to_regprocedure(f) IS NOT NULL)
FROM unnest(%s::text[]) AS f
"""


# -- writes -------------------------------------------------------------------------

# ON CONFLICT updates checkpoint and metadata only, as PostgresSaver does.
PUT_CHECKPOINT = """
INSERT INTO {schema}.checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

# For a checkpoint with more blobs than one statement should carry (in a transaction).
PUT_BLOBS = """
    INSERT INTO {schema}.checkpoint_blobs
        (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %s, %s, b.channel, b.version, b.type, b.blob
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[]) AS b (channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

DELETE_THREAD = """
WITH deleted_checkpoints AS (
    DELETE FROM {schema}.checkpoints WHERE thread_id = %s
), deleted_blobs AS (
    DELETE FROM {schema}.checkpoint_blobs WHERE thread_id = %s
)
DELETE FROM {schema}.checkpoint_writes WHERE thread_id = %s
"""

DELETE_THREADS = """
WITH deleted_checkpoints AS (
    DELETE FROM {schema}.checkpoints WHERE thread_id = ANY(%s::text[])
), deleted_blobs AS (
    DELETE FROM {schema}.checkpoint_blobs WHERE thread_id = ANY(%s::text[])
)
DELETE FROM {schema}.checkpoint_writes WHERE thread_id = ANY(%s::text[])
"""

THREAD_EXISTS = "SELECT EXISTS (SELECT 1 FROM {schema}.checkpoints WHERE thread_id = %s)"

# Server-side copy: no row crosses the network. Checkpoint IDs stay the same, so the
# copy lists in the same order and its parent links stay valid.
COPY_THREAD = """
WITH copied_checkpoints AS (
    INSERT INTO {schema}.checkpoints (thread_id, checkpoint_ns, checkpoint_id,
        parent_checkpoint_id, type, checkpoint, metadata)
    SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
    FROM {schema}.checkpoints WHERE thread_id = %s
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING
), copied_blobs AS (
    INSERT INTO {schema}.checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %s, checkpoint_ns, channel, version, type, blob
    FROM {schema}.checkpoint_blobs WHERE thread_id = %s
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO {schema}.checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
    task_path, idx, channel, type, blob)
SELECT %s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM {schema}.checkpoint_writes WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
"""

# -- reads --------------------------------------------------------------------------

# Rows of one result set, told apart by `kind`:
#   0 checkpoint: a = checkpoint_id, b = parent_checkpoint_id, c = checkpoint, d = metadata,
#                 idx = position in the page (the order of UNION ALL output is not promised)
#   1 blob:       a = channel, b = version, c = type, blob
#   2 write:      a = checkpoint_id, b = task_id, c = channel, d = type, e = task_path, blob, idx
#   3 send:       the same for the __pregel_tasks writes of a pre-v4 checkpoint's parent
_TUPLE_ROWS = """
SELECT 0 AS kind, c.thread_id, c.checkpoint_ns, c.checkpoint_id AS a,
       c.parent_checkpoint_id AS b, c.checkpoint::text AS c, c.metadata::text AS d,
       NULL::text AS e, NULL::bytea AS blob, c.pos::integer AS idx
FROM page AS c
UNION ALL
SELECT 1, k.thread_id, k.checkpoint_ns, k.channel, k.version, bl.type, NULL, NULL, bl.blob, NULL
FROM (
    SELECT DISTINCT c.thread_id, c.checkpoint_ns, v.key AS channel, v.value AS version
    FROM page AS c
    CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
) AS k
CROSS JOIN LATERAL (
    SELECT b.type, b.blob FROM {schema}.checkpoint_blobs AS b
    WHERE b.thread_id = k.thread_id AND b.checkpoint_ns = k.checkpoint_ns
      AND b.channel = k.channel AND b.version = k.version
    LIMIT 1
) AS bl
UNION ALL
SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.type,
       w.task_path, w.blob, w.idx
FROM page AS c
JOIN {schema}.checkpoint_writes AS w
  ON w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
 AND w.checkpoint_id = c.checkpoint_id
UNION ALL
SELECT 3, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.type,
       w.task_path, w.blob, w.idx
FROM (
    SELECT DISTINCT c.thread_id, c.checkpoint_ns, c.parent_checkpoint_id
    FROM page AS c
    WHERE c.parent_checkpoint_id IS NOT NULL AND (c.checkpoint ->> 'v')::integer < 4
) AS p
JOIN {schema}.checkpoint_writes AS w
  ON w.thread_id = p.thread_id AND w.checkpoint_ns = p.checkpoint_ns
 AND w.checkpoint_id = p.parent_checkpoint_id AND w.channel = '__pregel_tasks'
"""

_ORDER = "checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC"
_PAGE_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata, "
    f"row_number() OVER (ORDER BY {_ORDER}) AS pos"
)

# One page of list(): {where} is built from the fixed fragments below.
LIST_PAGE = f"""
WITH page AS (
    SELECT {_PAGE_COLUMNS} FROM {{schema}}.checkpoints
    {{where}}
    ORDER BY {_ORDER}
    LIMIT %s
)
{_TUPLE_ROWS}"""

WHERE_THREAD = "thread_id = %s"
WHERE_NS = "checkpoint_ns = %s"
WHERE_ID = "checkpoint_id = %s"
WHERE_METADATA = "metadata @> %s::jsonb"
WHERE_BEFORE = "checkpoint_id < %s"
# Keyset for the next page: within one thread and namespace the primary key orders it.
WHERE_AFTER_ID = "checkpoint_id < %s"
WHERE_AFTER_ROW = "(checkpoint_id, thread_id, checkpoint_ns) < (%s, %s, %s)"

# -- pruning, deleting runs, retention ----------------------------------------------

# A thread whose graph uses a DeltaChannel: its latest value is rebuilt from older
# checkpoints, so keep_latest must not prune it (the same test PostgresSaver uses).
DELTA_THREADS = """
SELECT thread_id FROM {schema}.checkpoints
WHERE thread_id = ANY(%s::text[]) AND (
    metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned'
)
UNION
SELECT c.thread_id
FROM {schema}.checkpoints AS c
CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
CROSS JOIN LATERAL (
    SELECT 1 FROM {schema}.checkpoint_blobs AS b
    WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
      AND b.channel = v.key AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
    LIMIT 1
) AS snapshot
WHERE c.thread_id = ANY(%s::text[]) AND v.value = 'true'::jsonb
"""


# Per namespace of one thread: the latest checkpoint; the parent it reads pending sends
# from when it predates checkpoint format v4; the root checkpoint a subgraph call
# started from, and whether that one is saved.
THREAD_HEADS = """
SELECT h.checkpoint_ns, h.checkpoint_id AS head,
    CASE WHEN (c.checkpoint ->> 'v')::integer < 4 AND EXISTS (
        SELECT 1 FROM {schema}.checkpoint_writes AS w
        WHERE w.thread_id = %s AND w.checkpoint_ns = h.checkpoint_ns
          AND w.checkpoint_id = c.parent_checkpoint_id AND w.channel = '__pregel_tasks'
    ) THEN c.parent_checkpoint_id END AS sends_parent,
    c.metadata -> 'parents' ->> '' AS root,
    EXISTS (
        SELECT 1 FROM {schema}.checkpoints AS r
        WHERE r.thread_id = %s AND r.checkpoint_ns = ''
          AND r.checkpoint_id = c.metadata -> 'parents' ->> ''
    ) AS root_saved
FROM (
    SELECT DISTINCT ON (checkpoint_ns) checkpoint_ns, checkpoint_id
    FROM {schema}.checkpoints WHERE thread_id = %s
    ORDER BY checkpoint_ns DESC, checkpoint_id DESC
) AS h
CROSS JOIN LATERAL (
    SELECT checkpoint, parent_checkpoint_id, metadata FROM {schema}.checkpoints
    WHERE thread_id = %s AND checkpoint_ns = h.checkpoint_ns AND checkpoint_id = h.checkpoint_id
) AS c
"""

DELETE_NAMESPACES = """
WITH deleted_checkpoints AS (
    DELETE FROM {schema}.checkpoints WHERE thread_id = %s AND checkpoint_ns = ANY(%s::text[])
), deleted_blobs AS (
    DELETE FROM {schema}.checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = ANY(%s::text[])
)
DELETE FROM {schema}.checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = ANY(%s::text[])
"""

# A checkpoint's age is its own `ts` (ISO 8601, written by LangGraph); a `ts` that is not
# a timestamp counts as not old, so retention never deletes what it cannot date.
CHECKPOINT_TS = (
    "(CASE WHEN c.checkpoint ->> 'ts' ~ "
    # the braces of the regex are doubled: every template is filled by SQL.format
    r"'^\d{{4}}-\d{{2}}-\d{{2}}[T ]\d{{2}}:\d{{2}}"
    r"(:\d{{2}}(\.\d+)?)?(Z|[+-]\d{{2}}(:?\d{{2}})?)?$' "
    "THEN (c.checkpoint ->> 'ts')::timestamptz END)"
)

# What DELETE_UNKEPT and DELETE_RUNS return: each deleted checkpoint, once per blob
# (channel, version) it referenced, for clearing parents and collecting blobs.
_DELETED_ROWS = """
SELECT d.thread_id, d.checkpoint_ns, d.checkpoint_id, v.key, v.value
FROM deleted AS d
LEFT JOIN LATERAL jsonb_each_text(d.versions) AS v ON true
"""

# Deletes the thread's checkpoints in the given namespaces except the kept ones (and,
# when a cutoff is given, except those not older than it), with their writes. Returns
# what each deleted checkpoint referenced, for the blob collection that follows.
# Writes go by the checkpoints deleted: a run may commit a step's writes before its
# checkpoint, and those must stay.
DELETE_UNKEPT = (
    """
WITH kept (checkpoint_ns, checkpoint_id) AS (
    SELECT * FROM unnest(%s::text[], %s::text[])
), deleted AS (
    DELETE FROM {schema}.checkpoints AS c
    WHERE c.thread_id = %s AND c.checkpoint_ns = ANY(%s::text[])
      AND NOT EXISTS (
          SELECT 1 FROM kept AS k
          WHERE k.checkpoint_ns = c.checkpoint_ns AND k.checkpoint_id = c.checkpoint_id
      )
      AND (%s::timestamptz IS NULL OR """
    + CHECKPOINT_TS
    + """ < %s::timestamptz)
    RETURNING c.thread_id, c.checkpoint_ns, c.checkpoint_id,
        c.checkpoint -> 'channel_versions' AS versions
), deleted_writes AS (
    DELETE FROM {schema}.checkpoint_writes AS w USING deleted AS d
    WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
      AND w.checkpoint_id = d.checkpoint_id
)"""
    + _DELETED_ROWS
)

DELETE_RUNS = (
    """
WITH deleted AS (
    DELETE FROM {schema}.checkpoints
    WHERE metadata ->> 'run_id' = ANY(%s::text[])
    RETURNING thread_id, checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions' AS versions
), deleted_writes AS (
    DELETE FROM {schema}.checkpoint_writes AS w USING deleted AS d
    WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
      AND w.checkpoint_id = d.checkpoint_id
)
"""
    + _DELETED_ROWS
)

# A checkpoint whose parent was deleted is left with no parent, as PostgresSaver's
# prune does, so no parent_config points at nothing.
CLEAR_DELETED_PARENTS = """
UPDATE {schema}.checkpoints AS c SET parent_checkpoint_id = NULL
FROM unnest(%s::text[], %s::text[], %s::text[]) AS d (thread_id, checkpoint_ns, checkpoint_id)
WHERE c.thread_id = d.thread_id AND c.checkpoint_ns = d.checkpoint_ns
  AND c.parent_checkpoint_id = d.checkpoint_id
"""

# Blobs that deleted checkpoints referenced and no remaining checkpoint of the same
# thread and namespace does. The remaining references are read once per namespace
# (a hash anti-join), not once per freed blob.
DELETE_UNREFERENCED_BLOBS = """
WITH freed (thread_id, checkpoint_ns, channel, version) AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
), namespaces AS (
    SELECT DISTINCT thread_id, checkpoint_ns FROM freed
), referenced AS (
    SELECT c.thread_id, c.checkpoint_ns, v.key AS channel, v.value AS version
    FROM namespaces AS n
    JOIN {schema}.checkpoints AS c
      ON c.thread_id = n.thread_id AND c.checkpoint_ns = n.checkpoint_ns
    CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
), garbage AS (
    SELECT * FROM freed EXCEPT SELECT * FROM referenced
)
DELETE FROM {schema}.checkpoint_blobs AS b USING garbage AS g
WHERE b.thread_id = g.thread_id AND b.checkpoint_ns = g.checkpoint_ns
  AND b.channel = g.channel AND b.version = g.version
"""

# Threads whose every checkpoint is older than the cutoff.
STALE_THREADS = (
    """
SELECT c.thread_id FROM {schema}.checkpoints AS c
GROUP BY c.thread_id
HAVING max("""
    + CHECKPOINT_TS
    + """) < %s::timestamptz
LIMIT %s
"""
)

# Deletes the given threads if, on this statement's snapshot, they are still stale.
DELETE_STALE_THREADS = (
    """
WITH stale AS (
    SELECT t.thread_id FROM unnest(%s::text[]) AS t (thread_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.checkpoints AS c
        WHERE c.thread_id = t.thread_id AND NOT coalesce("""
    + CHECKPOINT_TS
    + """ < %s::timestamptz, false)
    )
), deleted_checkpoints AS (
    DELETE FROM {schema}.checkpoints AS c USING stale AS s WHERE c.thread_id = s.thread_id
    RETURNING c.thread_id
), deleted_blobs AS (
    DELETE FROM {schema}.checkpoint_blobs AS b USING stale AS s WHERE b.thread_id = s.thread_id
), deleted_writes AS (
    DELETE FROM {schema}.checkpoint_writes AS w USING stale AS s WHERE w.thread_id = s.thread_id
)
SELECT count(DISTINCT thread_id), count(*) FROM deleted_checkpoints
"""
)

# Threads with a checkpoint older than the cutoff that is not its namespace's latest.
THREADS_WITH_OLD_HISTORY = (
    """
SELECT c.thread_id FROM {schema}.checkpoints AS c
WHERE """
    + CHECKPOINT_TS
    + """ < %s::timestamptz
  AND EXISTS (
      SELECT 1 FROM {schema}.checkpoints AS n
      WHERE n.thread_id = c.thread_id AND n.checkpoint_ns = c.checkpoint_ns
        AND n.checkpoint_id > c.checkpoint_id
  )
GROUP BY c.thread_id
LIMIT %s
"""
)


_rendered: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}


def rendered(conn: psycopg2.extensions.connection, schema: str, template: str, **parts: str) -> str:
    """``template`` filled in one pass by ``psycopg2.sql.SQL.format``: ``{schema}`` as the
    quoted identifier, each named part (a fixed fragment of this module, never a value:
    values are ``%s`` parameters) as it is. Literal braces in the templates are doubled.
    Remembered per (schema, template, parts): quoting needs a connection but never
    changes, and the text is immutable, so threads may share it."""
    key = (schema, template, tuple(sorted(parts.items())))
    text = _rendered.get(key)
    if text is None:
        fragments = {name: sql.SQL(fragment) for name, fragment in parts.items()}
        text = _rendered[key] = in_schema(template, schema, **fragments).as_string(conn)
    return text


def quote_schema(conn: psycopg2.extensions.connection, schema: str) -> str:
    return sql.Identifier(schema).as_string(conn)
