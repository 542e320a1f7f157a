"""The saver's PL/pgSQL functions, which get_tuple, put and put_writes call.

They exist for speed. A statement sent as text is parsed and planned on every call,
and for a read that is most of its cost; prepared statements would avoid it but break
behind PgBouncer in transaction mode. A PL/pgSQL function plans its statements once
per server process and keeps nothing per client session, so it suits PgBouncer too.

They are ours alone: PostgresSaver ignores them. ``migrate.py`` (re)creates them
(``CREATE OR REPLACE``) next to the tables, in the same transaction under the
package's DDL lock, and finds them by name (each of ``FUNCTION_SIGNATURES``), not by
migration version: the versions in ``checkpoint_migrations`` are
langgraph-checkpoint-postgres's, and one of ours there would make upstream skip its own
next migration. Like the statements of ``sql.py``, every text names its objects as
``{schema}.<name>`` for ``sql.rendered`` to fill in.
"""

# Named with a version, so a changed signature is a new function.
GET_FUNCTION = "aperag_checkpoint_get_v1"
PUT_FUNCTION = "aperag_checkpoint_put_v1"
PUT_WRITES_FUNCTION = "aperag_checkpoint_put_writes_v1"
FUNCTION_SIGNATURES = (
    f"{GET_FUNCTION}(text,text,text)",
    f"{PUT_FUNCTION}(text,text,text,text,jsonb,jsonb,text[],text[],text[],bytea[])",
    f"{PUT_WRITES_FUNCTION}(text,text,text,text,text,integer[],text[],text[],bytea[],boolean)",
)

# STABLE: every statement inside reads the caller's snapshot, so the checkpoint, its
# blobs and its writes are one consistent read. Output columns are those of sql.LIST_PAGE.
CREATE_GET_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.{GET_FUNCTION}(
    p_thread_id text, p_checkpoint_ns text, p_checkpoint_id text
) RETURNS TABLE (
    o_kind integer, o_thread_id text, o_checkpoint_ns text, o_a text, o_b text, o_c text,
    o_d text, o_e text, o_blob bytea, o_idx integer
) LANGUAGE plpgsql STABLE AS $body$
DECLARE
    cp record;
BEGIN
    IF p_checkpoint_id IS NULL THEN
        SELECT c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata INTO cp
        FROM {{schema}}.checkpoints AS c
        WHERE c.thread_id = p_thread_id AND c.checkpoint_ns = p_checkpoint_ns
        ORDER BY c.checkpoint_id DESC LIMIT 1;
    ELSE
        SELECT c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata INTO cp
        FROM {{schema}}.checkpoints AS c
        WHERE c.thread_id = p_thread_id AND c.checkpoint_ns = p_checkpoint_ns
          AND c.checkpoint_id = p_checkpoint_id;
    END IF;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT 0, p_thread_id, p_checkpoint_ns, cp.checkpoint_id,
        cp.parent_checkpoint_id, cp.checkpoint::text, cp.metadata::text, NULL::text,
        NULL::bytea, 1;
    RETURN QUERY SELECT 1, p_thread_id, p_checkpoint_ns, v.key, v.value, bl.type, NULL::text,
        NULL::text, bl.blob, NULL::integer
    FROM jsonb_each_text(cp.checkpoint -> 'channel_versions') AS v
    CROSS JOIN LATERAL (
        SELECT b.type, b.blob FROM {{schema}}.checkpoint_blobs AS b
        WHERE b.thread_id = p_thread_id AND b.checkpoint_ns = p_checkpoint_ns
          AND b.channel = v.key AND b.version = v.value
        LIMIT 1
    ) AS bl;
    RETURN QUERY SELECT 2, p_thread_id, p_checkpoint_ns, w.checkpoint_id, w.task_id,
        w.channel, w.type, w.task_path, w.blob, w.idx
    FROM {{schema}}.checkpoint_writes AS w
    WHERE w.thread_id = p_thread_id AND w.checkpoint_ns = p_checkpoint_ns
      AND w.checkpoint_id = cp.checkpoint_id;
    IF cp.parent_checkpoint_id IS NOT NULL AND (cp.checkpoint ->> 'v')::integer < 4 THEN
        RETURN QUERY SELECT 3, p_thread_id, p_checkpoint_ns, w.checkpoint_id, w.task_id,
            w.channel, w.type, w.task_path, w.blob, w.idx
        FROM {{schema}}.checkpoint_writes AS w
        WHERE w.thread_id = p_thread_id AND w.checkpoint_ns = p_checkpoint_ns
          AND w.checkpoint_id = cp.parent_checkpoint_id AND w.channel = '__pregel_tasks';
    END IF;
END
$body$
"""

# The blobs and the checkpoint in one call, so in one transaction: the checkpoint never
# exists without its blobs. A blob version is written once and never changes; on a
# repeated checkpoint ID only checkpoint and metadata are replaced, as in PostgresSaver.
CREATE_PUT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.{PUT_FUNCTION}(
    p_thread_id text, p_checkpoint_ns text, p_checkpoint_id text, p_parent_id text,
    p_checkpoint jsonb, p_metadata jsonb,
    p_channels text[], p_versions text[], p_types text[], p_blobs bytea[]
) RETURNS void LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
    IF cardinality(p_channels) > 0 THEN
        INSERT INTO {{schema}}.checkpoint_blobs
            (thread_id, checkpoint_ns, channel, version, type, blob)
        SELECT p_thread_id, p_checkpoint_ns, b.channel, b.version, b.type, b.blob
        FROM unnest(p_channels, p_versions, p_types, p_blobs) AS b (channel, version, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING;
    END IF;
    INSERT INTO {{schema}}.checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    VALUES (p_thread_id, p_checkpoint_ns, p_checkpoint_id, p_parent_id, p_checkpoint, p_metadata)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata;
END
$body$
"""

# Special channels (errors, interrupts...) have fixed negative idx and are replaced
# (p_replace); ordinary writes keep the first attempt. Both as in PostgresSaver.
CREATE_PUT_WRITES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.{PUT_WRITES_FUNCTION}(
    p_thread_id text, p_checkpoint_ns text, p_checkpoint_id text, p_task_id text,
    p_task_path text, p_idx integer[], p_channels text[], p_types text[], p_blobs bytea[],
    p_replace boolean
) RETURNS void LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
    IF p_replace THEN
        INSERT INTO {{schema}}.checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id,
            task_id, task_path, idx, channel, type, blob)
        SELECT p_thread_id, p_checkpoint_ns, p_checkpoint_id, p_task_id, p_task_path,
            w.idx, w.channel, w.type, w.blob
        FROM unnest(p_idx, p_channels, p_types, p_blobs) AS w (idx, channel, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob;
    ELSE
        INSERT INTO {{schema}}.checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id,
            task_id, task_path, idx, channel, type, blob)
        SELECT p_thread_id, p_checkpoint_ns, p_checkpoint_id, p_task_id, p_task_path,
            w.idx, w.channel, w.type, w.blob
        FROM unnest(p_idx, p_channels, p_types, p_blobs) AS w (idx, channel, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING;
    END IF;
END
$body$
"""

CREATE_FUNCTIONS = (CREATE_GET_FUNCTION, CREATE_PUT_FUNCTION, CREATE_PUT_WRITES_FUNCTION)

CALL_GET = f"SELECT * FROM {{schema}}.{GET_FUNCTION}(%s, %s, %s)"
CALL_PUT = f"SELECT {{schema}}.{PUT_FUNCTION}(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
CALL_PUT_WRITES = f"SELECT {{schema}}.{PUT_WRITES_FUNCTION}(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
