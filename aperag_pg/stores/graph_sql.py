"""SQL of the graph store (``graph.py``): PGTableGraphStorage 1.5.7's DDL and every statement.

``{nodes}`` and ``{edges}`` are filled with the schema-qualified tables; ``%(ws)s`` and
``%(ns)s`` bind the workspace and namespace. Orders that must match Python's ``sorted()``
say ``COLLATE "C"`` (code-point order in UTF-8), whatever the database's collation.
"""

NODES = "lightrag_graph_nodes"
EDGES = "lightrag_graph_edges"

# PGTableGraphStorage 1.5.7's tables, indexes and constraints, schema-qualified.
DDL = (
    """CREATE TABLE IF NOT EXISTS {nodes} (
    workspace   TEXT        NOT NULL,
    namespace   TEXT        NOT NULL DEFAULT 'chunk_entity_relation',
    id          TEXT        NOT NULL,
    properties  JSONB       NOT NULL DEFAULT '{{}}',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, namespace, id)
)""",
    """CREATE TABLE IF NOT EXISTS {edges} (
    workspace   TEXT        NOT NULL,
    namespace   TEXT        NOT NULL DEFAULT 'chunk_entity_relation',
    src_id      TEXT        NOT NULL,
    tgt_id      TEXT        NOT NULL,
    properties  JSONB       NOT NULL DEFAULT '{{}}',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, namespace, src_id, tgt_id),
    CONSTRAINT fk_lightrag_graph_edges_src FOREIGN KEY (workspace, namespace, src_id)
        REFERENCES {nodes} (workspace, namespace, id) ON DELETE CASCADE,
    CONSTRAINT fk_lightrag_graph_edges_tgt FOREIGN KEY (workspace, namespace, tgt_id)
        REFERENCES {nodes} (workspace, namespace, id) ON DELETE CASCADE
)""",
    "CREATE INDEX IF NOT EXISTS idx_lightrag_graph_edges_namespace_tgt "
    "ON {edges} (workspace, namespace, tgt_id)",
    # LightRAG's guard for edges stored in the wrong order; empty while writers canonicalise.
    "CREATE INDEX IF NOT EXISTS idx_lightrag_graph_edges_noncanonical "
    'ON {edges} (workspace, namespace) WHERE src_id COLLATE "C" > tgt_id COLLATE "C"',
)

# -- SQL. {nodes} and {edges} are the schema-qualified tables; %(ws)s/%(ns)s the partition --

SCOPE = "workspace = %(ws)s AND namespace = %(ns)s"


def among(parameter: str) -> str:
    """``= ANY(...)`` of a list parameter, hidden from the planner behind a sub-select.

    psycopg2 sends a list as a literal array, and the planner estimates ``= ANY`` of a
    literal element by element: 4,000 ids took 18 ms to plan against 2 ms this way.
    """
    return f"ANY(ARRAY(SELECT unnest(%({parameter})s::text[])))"


def outside(column: str, parameter: str) -> str:
    """``column`` is none of the list parameter's values: a hashed anti-join, where
    ``<> ALL(literal)`` is estimated element by element and compared one by one."""
    return (
        f"NOT EXISTS (SELECT 1 FROM unnest(%({parameter})s::text[]) AS x(id) WHERE x.id = {column})"
    )


# Rows arrive as one JSON array per statement, in the order they must be locked.
UPSERT_NODES = """
WITH written AS (
    INSERT INTO {nodes} AS n (workspace, namespace, id, properties, updated_at)
    SELECT %(ws)s, %(ns)s, r.id, r.properties, now()
    FROM ROWS FROM (json_to_recordset(%(rows)s::json) AS (id text, properties jsonb))
         WITH ORDINALITY AS r(id, properties, i)
    ORDER BY r.i
    ON CONFLICT (workspace, namespace, id) DO UPDATE
        SET properties = n.properties || EXCLUDED.properties, updated_at = now()
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written FROM written
"""

# Lock order, for every call that writes: first the nodes it needs, in code-point order,
# then the edges, in code-point order (src, tgt). Calls that take locks in one global order
# wait for each other in turn, never in a cycle, so writers and deleters never deadlock.

# An edge's endpoints, each created (as {"entity_id": id}) or locked FOR NO KEY UPDATE: the
# always-false condition locks the row without rewriting it. DO NOTHING would lock nothing,
# and a node deleted meanwhile would fail the edge's foreign key check. A delete waits for
# the lock; the insert retries when the row it conflicted with is deleted first.
_ENDPOINTS = """
endpoints AS (
    INSERT INTO {nodes} AS n (workspace, namespace, id, properties, updated_at)
    SELECT %(ws)s, %(ns)s, e.id, jsonb_build_object('entity_id', e.id), now()
    FROM unnest(%(endpoints)s::text[]) WITH ORDINALITY AS e(id, i)
    ORDER BY e.i
    ON CONFLICT (workspace, namespace, id) DO UPDATE SET updated_at = n.updated_at WHERE false
    RETURNING 1
),
endpoints_done AS (SELECT count(*) AS created FROM endpoints)
"""

# Endpoints first (endpoints_done is counted before the first edge is written), then edges.
UPSERT_EDGES = (
    "WITH"
    + _ENDPOINTS
    + """,
written AS (
    INSERT INTO {edges} AS g (workspace, namespace, src_id, tgt_id, properties, updated_at)
    SELECT %(ws)s, %(ns)s, r.src, r.tgt, r.properties, now()
    FROM ROWS FROM (json_to_recordset(%(rows)s::json) AS (src text, tgt text, properties jsonb))
         WITH ORDINALITY AS r(src, tgt, properties, i)
    CROSS JOIN endpoints_done
    ORDER BY r.i
    ON CONFLICT (workspace, namespace, src_id, tgt_id) DO UPDATE
        SET properties = g.properties || EXCLUDED.properties, updated_at = now()
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written FROM written
"""
)

# One node: the same, in a statement that plans faster.
UPSERT_NODE = """
INSERT INTO {nodes} AS n (workspace, namespace, id, properties, updated_at)
VALUES (%(ws)s, %(ns)s, %(id)s, %(row)s::jsonb -> 'properties', now())
ON CONFLICT (workspace, namespace, id) DO UPDATE
    SET properties = n.properties || EXCLUDED.properties, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

# One edge (LightRAG's merge writes them one by one): the same, in a statement that plans
# in half the time. %(endpoints)s names a self-loop's node once (ON CONFLICT DO UPDATE
# refuses to meet one row twice).
UPSERT_EDGE = (
    "WITH"
    + _ENDPOINTS
    + """
INSERT INTO {edges} AS g (workspace, namespace, src_id, tgt_id, properties, updated_at)
SELECT %(ws)s, %(ns)s, %(src)s, %(tgt)s, %(row)s::jsonb -> 'properties', now()
FROM endpoints_done
ON CONFLICT (workspace, namespace, src_id, tgt_id) DO UPDATE
    SET properties = g.properties || EXCLUDED.properties, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""
)

# Each lookup comes for one item and for a list: one item plans in a tenth of the time.
GET_NODE = f"SELECT id, properties FROM {{nodes}} WHERE {SCOPE} AND id = %(id)s"
GET_NODES = f"SELECT id, properties FROM {{nodes}} WHERE {SCOPE} AND id = {among('ids')}"
NODE_ID = f"SELECT id FROM {{nodes}} WHERE {SCOPE} AND id = %(id)s"
NODE_IDS = f"SELECT id FROM {{nodes}} WHERE {SCOPE} AND id = {among('ids')}"

# Degrees count each endpoint of each edge: a self-loop counts twice, as in NetworkX.
DEGREES = f"""
SELECT id, count(*) AS degree FROM (
    SELECT src_id AS id FROM {{edges}} WHERE {SCOPE} AND src_id = {among("ids")}
    UNION ALL
    SELECT tgt_id FROM {{edges}} WHERE {SCOPE} AND tgt_id = {among("ids")}
) ends GROUP BY id
"""

# One arm per index (the primary key leads with src_id, the other index with tgt_id).
NEIGHBOURS = f"""
SELECT src_id AS id, tgt_id AS neighbour FROM {{edges}} WHERE {SCOPE} AND src_id = {among("ids")}
UNION ALL
SELECT tgt_id, src_id FROM {{edges}}
WHERE {SCOPE} AND tgt_id = {among("ids")} AND src_id <> tgt_id
"""

NODE_EDGES = f"""
SELECT EXISTS (SELECT 1 FROM {{nodes}} WHERE {SCOPE} AND id = %(id)s) AS found,
       ARRAY(SELECT neighbour FROM ({NEIGHBOURS}) n) AS neighbours
"""

GET_EDGE = f"""
SELECT src_id, tgt_id, properties FROM {{edges}}
WHERE {SCOPE} AND src_id = %(src)s AND tgt_id = %(tgt)s
"""
GET_EDGES = f"""
SELECT src_id, tgt_id, properties FROM {{edges}}
WHERE {SCOPE} AND (src_id, tgt_id) IN (SELECT * FROM unnest(%(srcs)s::text[], %(tgts)s::text[]))
"""

# Deletes follow the writers' lock order: a node delete locks the nodes that exist (one
# statement), then, in a later statement, whose snapshot sees every edge committed before
# those locks were held (and no writer can add one after), locks their edges and deletes
# edges and nodes. The cascade alone would lock edges in whatever order its scans meet
# them. Only the nodes locked are deleted: one created meanwhile was never locked.
LOCK_NODES = f"""
SELECT id FROM {{nodes}} WHERE {SCOPE} AND id = {among("ids")} ORDER BY id COLLATE "C"
FOR UPDATE
"""
LOCK_ALL_NODES = f'SELECT id FROM {{nodes}} WHERE {SCOPE} ORDER BY id COLLATE "C" FOR UPDATE'


def _delete_edges(where: str) -> str:
    """Delete the edges ``where`` selects, locked in (src, tgt) order first. The join
    deletes only rows the locking scan returned, never one committed after its snapshot."""
    return f"""
DELETE FROM {{edges}} g USING (
    SELECT src_id, tgt_id FROM {{edges}} WHERE {SCOPE} AND {where}
    ORDER BY src_id COLLATE "C", tgt_id COLLATE "C" FOR UPDATE
) locked
WHERE g.workspace = %(ws)s AND g.namespace = %(ns)s
    AND g.src_id = locked.src_id AND g.tgt_id = locked.tgt_id
"""


DELETE_LOCKED_NODES = f"""
WITH edges_gone AS (
    {_delete_edges(f"(src_id = {among('ids')} OR tgt_id = {among('ids')})")}
)
DELETE FROM {{nodes}} WHERE {SCOPE} AND id = {among("ids")}
"""
DELETE_EDGES = _delete_edges(
    "(src_id, tgt_id) IN (SELECT * FROM unnest(%(srcs)s::text[], %(tgts)s::text[]))"
)
COUNTS = f"""
SELECT (SELECT count(*) FROM {{nodes}} WHERE {SCOPE}) AS nodes,
       (SELECT count(*) FROM {{edges}} WHERE {SCOPE}) AS edges
"""

ALL_LABELS = f'SELECT id FROM {{nodes}} WHERE {SCOPE} ORDER BY id COLLATE "C"'
ALL_NODES = f'SELECT id, properties FROM {{nodes}} WHERE {SCOPE} ORDER BY id COLLATE "C"'
ALL_EDGES = f"""
SELECT src_id, tgt_id, properties FROM {{edges}} WHERE {SCOPE}
ORDER BY src_id COLLATE "C", tgt_id COLLATE "C"
"""

# Every node with its degree, highest first, ties by label in code-point order.
_RANKED = f"""
SELECT n.id, {{columns}} COALESCE(d.degree, 0) AS degree
FROM {{{{nodes}}}} n
LEFT JOIN (
    SELECT id, count(*) AS degree FROM (
        SELECT src_id AS id FROM {{{{edges}}}} WHERE {SCOPE}
        UNION ALL
        SELECT tgt_id FROM {{{{edges}}}} WHERE {SCOPE}
    ) ends GROUP BY id
) d ON d.id = n.id
WHERE n.workspace = %(ws)s AND n.namespace = %(ns)s
ORDER BY degree DESC, n.id COLLATE "C"
LIMIT %(limit)s
"""
RANKED_IDS = _RANKED.format(columns="")
RANKED_NODES = _RANKED.format(columns="n.properties,")

# NetworkXStorage.search_labels' scores, computed and ranked by the server: exact 1000,
# prefix 500, else 100 - length, +50 when the match follows a space or an underscore.
SEARCH_LABELS = f"""
SELECT id FROM (
    SELECT id, CASE
        WHEN lower(id) = lower(%(query)s) THEN 1000
        WHEN lower(id) LIKE lower(%(prefix)s) ESCAPE '!' THEN 500
        ELSE 100 - length(id) + CASE
            WHEN lower(id) LIKE lower(%(after_space)s) ESCAPE '!'
              OR lower(id) LIKE lower(%(after_underscore)s) ESCAPE '!' THEN 50 ELSE 0 END
    END AS score
    FROM {{nodes}}
    WHERE {SCOPE} AND lower(id) LIKE lower(%(contains)s) ESCAPE '!'
) scored
ORDER BY score DESC, id COLLATE "C"
LIMIT %(limit)s
"""

# One BFS level: the unvisited neighbours of the frontier, highest degree first (ties by
# label), at most %(limit)s of them. The degree is the node's degree in the whole graph.
BFS_LEVEL = f"""
WITH neighbours AS (
    SELECT tgt_id AS id FROM {{edges}} WHERE {SCOPE} AND src_id = {among("frontier")}
    UNION
    SELECT src_id FROM {{edges}} WHERE {SCOPE} AND tgt_id = {among("frontier")}
),
candidates AS (
    SELECT id FROM neighbours n WHERE {outside("n.id", "visited")}
),
degrees AS (
    SELECT id, count(*) AS degree FROM (
        SELECT src_id AS id FROM {{edges}}
        WHERE {SCOPE} AND src_id IN (SELECT id FROM candidates)
        UNION ALL
        SELECT tgt_id FROM {{edges}}
        WHERE {SCOPE} AND tgt_id IN (SELECT id FROM candidates)
    ) ends GROUP BY id
)
SELECT n.id, n.properties, COALESCE(d.degree, 0) AS degree
FROM candidates c
JOIN {{nodes}} n ON n.workspace = %(ws)s AND n.namespace = %(ns)s AND n.id = c.id
LEFT JOIN degrees d ON d.id = c.id
ORDER BY degree DESC, n.id COLLATE "C"
LIMIT %(limit)s
"""

# Does any node of %(level)s have a neighbour, other than itself, outside %(known)s?
HAS_NEIGHBOUR_OUTSIDE = f"""
SELECT EXISTS (
    SELECT 1 FROM {{edges}} WHERE {SCOPE} AND src_id = {among("level")}
        AND tgt_id <> src_id AND {outside("tgt_id", "known")}
    UNION ALL
    SELECT 1 FROM {{edges}} WHERE {SCOPE} AND tgt_id = {among("level")}
        AND src_id <> tgt_id AND {outside("src_id", "known")}
) AS found
"""

INDUCED_EDGES = f"""
SELECT src_id, tgt_id, properties FROM {{edges}}
WHERE {SCOPE} AND src_id = {among("ids")} AND tgt_id IN (SELECT unnest(%(ids)s::text[]))
ORDER BY src_id COLLATE "C", tgt_id COLLATE "C"
"""

ANALYZE = "ANALYZE {nodes}, {edges}"
