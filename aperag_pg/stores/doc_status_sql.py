"""SQL of the document-status store (``doc_status.py``): lightrag-hku 1.5.7
``PGDocStatusStorage``'s table, DDL and every statement, plus the column lists that shape
them.

``{table}`` is filled with the schema-qualified table; literal braces are doubled for
``sql.SQL.format``. Other placeholders (``{after}``, ``{exclude}``, ``{order}``, ...) take
the SQL fragments the store composes; ``%s`` / ``%(name)s`` bind values.
"""

import re

TABLE = "LIGHTRAG_DOC_STATUS"

DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
    workspace varchar(255) NOT NULL,
    id varchar(255) NOT NULL,
    content_summary varchar(255) NULL,
    content_length int4 NULL,
    chunks_count int4 NULL,
    status varchar(64) NULL,
    file_path TEXT NULL,
    chunks_list JSONB NULL DEFAULT '[]'::jsonb,
    track_id varchar(255) NULL,
    metadata JSONB NULL DEFAULT '{{}}'::jsonb,
    error_msg TEXT NULL,
    content_hash TEXT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT LIGHTRAG_DOC_STATUS_PK PRIMARY KEY (workspace, id)
)""",
    # PostgreSQLDB.check_tables: every table gets (id) and (workspace, id).
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_id ON {table} (id)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_id ON {table} (workspace, id)",
    # _migrate_doc_status_add_track_id
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_track_id ON {table} (track_id)",
    # _create_pagination_indexes
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_status_updated_at "
    "ON {table} (workspace, status, updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_status_created_at "
    "ON {table} (workspace, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_updated_at "
    "ON {table} (workspace, updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_created_at "
    "ON {table} (workspace, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_file_path "
    "ON {table} (workspace, file_path)",
    # _migrate_doc_status_add_content_hash
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_content_hash "
    "ON {table} (workspace, content_hash) WHERE content_hash IS NOT NULL AND content_hash <> ''",
    # _migrate_doc_status_add_scheduling_index: NULLS FIRST matches the sweep's ORDER BY.
    "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_ws_status_created_nf_id "
    "ON {table} (workspace, status, created_at NULLS FIRST, id)",
)
# The typed columns a record fills, with their types as the DDL above declares them: each
# value is checked against its column (aperag_pg.values.check_column) before any write.
CHECKED_COLUMNS = {
    name: sql_type
    for name, sql_type in re.findall(r"^\s+(\w+) (varchar\(\d+\)|int4|TEXT)", DDL[0], re.M)
    if name not in ("workspace", "id")
}

_DOC_COLUMNS = (
    "id, content_summary, content_length, chunks_count, status, file_path, chunks_list, "
    "track_id, metadata, error_msg, content_hash, created_at, updated_at"
)
# The scheduling projection: no chunks_list, no metadata blob, just the journal flag
# (LightRAG: isinstance(metadata.get(CUSTOM_CHUNK_PATCH_METADATA_KEY), dict), the key
# being lightrag.constants' "custom_chunk_patch").
_RECORD_COLUMNS = (
    "id, status, created_at, updated_at, file_path, track_id, "
    "COALESCE(jsonb_typeof(metadata -> 'custom_chunk_patch') = 'object', false) "
    "AS has_custom_chunk_journal"
)
# Primary (non-duplicate) rows; a non-boolean is_duplicate raises, as in LightRAG.
_PRIMARY = "COALESCE((metadata->>'is_duplicate')::boolean, false) = false"

SELECT_IDS = "SELECT id FROM {table} WHERE workspace = %s AND id = ANY(%s::text[])"
SELECT_DOCS_BY_IDS = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND id = ANY(%s::text[])"
)
SELECT_RECORDS_BY_IDS = (
    f"SELECT {_RECORD_COLUMNS} FROM {{table}} WHERE workspace = %s AND id = ANY(%s::text[])"
)
SELECT_DOCS_BY_STATUSES = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND status = ANY(%s::text[])"
)
SELECT_DOCS_BY_TRACK_ID = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND track_id = %s"
)
# LightRAG takes "the first row" without an order; the earliest makes it deterministic.
SELECT_DOC_BY_FILE_PATH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    "ORDER BY created_at ASC, id ASC LIMIT 1"
)
SELECT_PRIMARY_BY_FILE_PATH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY} ORDER BY created_at ASC, id ASC LIMIT 1"
)
SELECT_DOC_BY_CONTENT_HASH = (
    f"SELECT {_DOC_COLUMNS} FROM {{table}} WHERE workspace = %(workspace)s "
    "AND content_hash = %(hash)s {exclude} ORDER BY created_at ASC, id ASC LIMIT 1"
)
# Neither the asking row nor a duplicate marker that points at it (see LightRAG's
# get_doc_by_content_hash contract); both stay WHERE predicates, so LIMIT 1 still
# finds the earliest remaining holder.
EXCLUDE_DOC = (
    "AND id <> %(exclude)s AND NOT (COALESCE((metadata->>'is_duplicate')::boolean, false) "
    "AND COALESCE(metadata->>'original_doc_id', '') = %(exclude)s)"
)
SELECT_PRIMARY_RECORDS = (
    f"SELECT {_RECORD_COLUMNS} FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY} ORDER BY created_at ASC, id ASC LIMIT 2"
)
COUNT_PRIMARY = (
    f"SELECT count(*) AS count FROM {{table}} WHERE workspace = %s AND file_path = %s "
    f"AND {_PRIMARY}"
)
LOCK_PRIMARY_IDS = (
    f"SELECT id FROM {{table}} WHERE workspace = %s AND file_path = %s AND {_PRIMARY} "
    "ORDER BY id ASC FOR UPDATE"
)
DEMOTE = (
    "UPDATE {table} SET metadata = jsonb_set(jsonb_set(COALESCE(metadata, jsonb_build_object()), "
    "ARRAY['is_duplicate'], 'true'::jsonb, true), ARRAY['original_doc_id'], to_jsonb(%s::text), "
    "true) WHERE workspace = %s AND id = ANY(%s::text[])"
)
# Keyed by canonical source key; each group's sample is bounded inside the query.
SELECT_CONFLICTS = (
    "SELECT g.file_path, g.count, s.sample FROM ("
    "  SELECT file_path, count(*) AS count FROM {table}"
    f"  WHERE workspace = %(workspace)s AND {_PRIMARY} AND file_path IS NOT NULL"
    "  AND file_path NOT IN ('', 'unknown_source', 'no-file-path')"
    "  AND (%(after)s::text IS NULL OR file_path > %(after)s::text)"
    "  GROUP BY file_path HAVING count(*) >= 2 ORDER BY file_path ASC LIMIT %(limit)s"
    ") g CROSS JOIN LATERAL ("
    "  SELECT array_agg(c.id ORDER BY c.id) AS sample FROM ("
    "    SELECT id FROM {table} WHERE workspace = %(workspace)s"
    f"    AND file_path = g.file_path AND {_PRIMARY} ORDER BY id ASC LIMIT %(cap)s"
    "  ) c"
    ") s ORDER BY g.file_path ASC"
)
COUNT_BY_STATUSES = (
    "SELECT count(*) AS count FROM {table} WHERE workspace = %s AND status = ANY(%s::text[])"
)
COUNT_BY_STATUS = (
    "SELECT status, count(*) AS count FROM {table} WHERE workspace = %s GROUP BY status"
)
EXISTS = "SELECT EXISTS (SELECT 1 FROM {table} WHERE workspace = %s) AS found"
DELETE_IDS = "DELETE FROM {table} WHERE workspace = %s AND id = ANY(%s::text[])"
DELETE_WORKSPACE = "DELETE FROM {table} WHERE workspace = %s"
UPDATE_FIELDS = "UPDATE {table} SET {assignments} WHERE workspace = %s AND id = %s RETURNING id"
UPSERT = """INSERT INTO {table} (workspace, id, content_summary, content_length, chunks_count,
    status, file_path, chunks_list, track_id, metadata, error_msg, content_hash, created_at,
    updated_at)
VALUES %s
ON CONFLICT (id, workspace) DO UPDATE SET
    content_summary = EXCLUDED.content_summary,
    content_length = EXCLUDED.content_length,
    chunks_count = EXCLUDED.chunks_count,
    status = EXCLUDED.status,
    file_path = EXCLUDED.file_path,
    chunks_list = EXCLUDED.chunks_list,
    track_id = EXCLUDED.track_id,
    metadata = EXCLUDED.metadata,
    error_msg = EXCLUDED.error_msg,
    content_hash = COALESCE(NULLIF(EXCLUDED.content_hash, ''), {table}.content_hash),
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at"""
# The columns upsert writes after (workspace, id), in UPSERT's order.
UPSERT_COLUMNS = (
    "content_summary",
    "content_length",
    "chunks_count",
    "status",
    "file_path",
    "chunks_list",
    "track_id",
    "metadata",
    "error_msg",
    "content_hash",
    "created_at",
    "updated_at",
)

# The keyset sweep: per status, an ordered index scan of at most `limit` rows past the
# cursor (index ..._ws_status_created_nf_id); then the merged top `limit`. Every filter is
# in SQL, so the rows returned ARE the consumed frontier.
_SWEEP_ORDER = "ORDER BY created_at ASC NULLS FIRST, id ASC"
SELECT_PAGE = (
    "SELECT d.* FROM unnest(%(statuses)s::text[]) AS s(status) CROSS JOIN LATERAL ("
    f"  SELECT {_RECORD_COLUMNS} FROM {{table}}"
    "  WHERE workspace = %(workspace)s AND status = s.status {after}"
    f"  {_SWEEP_ORDER} LIMIT %(limit)s"
    f") d {_SWEEP_ORDER} LIMIT %(limit)s"
)
# NULL created_at rows sort first; a cursor inside that bucket goes on through it by id
# and then to every real timestamp, a cursor past it compares the (created_at, id) key.
AFTER_NULL_BUCKET = "AND ((created_at IS NULL AND id > %(after_id)s) OR created_at IS NOT NULL)"
AFTER_KEY = (
    "AND created_at IS NOT NULL AND (created_at, id) > (%(after_created)s::timestamp, %(after_id)s)"
)

# One snapshot for the total and the page; the LEFT JOIN keeps the total when the page
# is past the end. chunks_list is not read: listings return it empty, like LightRAG.
SELECT_PAGINATED = """WITH total AS (
    SELECT count(*) AS total FROM {table}
    WHERE workspace = %(workspace)s
      AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
), paged AS (
    SELECT id, content_summary, content_length, chunks_count, status, file_path, track_id,
           metadata, error_msg, content_hash, created_at, updated_at
    FROM {table}
    WHERE workspace = %(workspace)s
      AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
    ORDER BY {order}
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT p.*, t.total FROM total t LEFT JOIN paged p ON true ORDER BY {outer_order}"""
