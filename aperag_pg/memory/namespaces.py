"""Namespaces as stored (labels joined by dots) and the SQL that finds them.

``list_namespaces`` walks the distinct namespaces on ``store_prefix_idx`` (upstream's
``text_pattern_ops`` index, byte order): one index probe per namespace, never per item;
a namespace deeper than ``max_depth`` skips its whole subtree in one probe, and the walk
stops as soon as ``offset + limit`` namespaces matched. Upstream reads and splits every
row of the table. Namespaces come back in byte order (upstream: the database's
collation, the same order under the C collation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import ListNamespacesOp, MatchCondition
from psycopg2 import sql as pgsql

from ..schema import in_schema
from . import sql

SEPARATOR = "."


def to_text(namespace: Sequence[str]) -> str:
    return SEPARATOR.join(namespace)


def from_text(prefix: str) -> tuple[str, ...]:
    return tuple(prefix.split(SEPARATOR))


_UNDER = pgsql.SQL("({column} = %s OR {column} LIKE %s ESCAPE '\\')")


def prefix_condition(
    namespace_prefix: Sequence[str], column: pgsql.Composable
) -> tuple[pgsql.Composable, list[str]]:
    """``column`` is the namespace or below it: a label boundary, so ``("a",)`` never
    matches ``("ab",)``, and LIKE's wildcards in labels are taken literally."""
    if not namespace_prefix:
        return sql.ANY, []
    path = to_text(namespace_prefix)
    return _UNDER.format(column=column), [path, f"{_like_literal(path)}.%"]


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def match_pattern(condition: MatchCondition) -> str:
    """A POSIX regex for a prefix or suffix condition on whole labels (``*``: any one)."""
    body = r"\.".join("[^.]+" if label == "*" else re.escape(label) for label in condition.path)
    if condition.match_type == "suffix":
        return rf"(^|\.){body}$"
    return rf"^{body}(\.|$)"


# ~>=~ and ~<~ are the byte-order operators of text_pattern_ops: they use the index. Each
# step finds the next namespace, its truncation to max_depth, whether it matches the
# conditions, and counts the truncations that matched and changed: the walk stops once
# ``enough`` did (None: never), as it emits them in byte order (see may_be_out_of_order).
_WALK = pgsql.SQL("""
WITH RECURSIVE walk(prefix, truncated, matched, last, found) AS (
    (SELECT f.prefix, f.truncated, f.matched, CASE WHEN f.matched THEN f.truncated END,
            f.matched::int
     FROM (SELECT s.prefix, {truncated} AS truncated, {matched} AS matched
           FROM {schema}.store AS s
           WHERE s.prefix ~>=~ %(start)s {before} {live}
           ORDER BY s.prefix USING ~<~ LIMIT 1) AS f)
    UNION ALL
    SELECT f.prefix, f.truncated, f.matched,
           CASE WHEN f.matched THEN f.truncated ELSE w.last END,
           w.found + (f.matched AND f.truncated IS DISTINCT FROM w.last)::int
    FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT s.prefix, {truncated} AS truncated, {matched} AS matched
        FROM {schema}.store AS s
        WHERE s.prefix ~>=~ ({after}) {before} {live}
        ORDER BY s.prefix USING ~<~ LIMIT 1
    ) AS f
    WHERE %(enough)s::bigint IS NULL OR w.found < %(enough)s
)
SELECT DISTINCT truncated COLLATE "C" AS prefix FROM walk WHERE matched ORDER BY 1
""")
# The smallest text after ``w.prefix`` (NUL cannot be in text, so chr(1) is next), or for a
# namespace deeper than max_depth, the first after its truncation's whole subtree
# ("a.b" + "/" follows every "a.b.*": '/' is the byte after '.').
_NEXT = pgsql.SQL("w.prefix || chr(1)")
_NEXT_SUBTREE = pgsql.SQL(
    "CASE WHEN cardinality(string_to_array(w.prefix, '.')) > %(depth)s "
    "THEN array_to_string((string_to_array(w.prefix, '.'))[1:%(depth)s], '.') || '/' "
    "ELSE w.prefix || chr(1) END"
)
_TRUNCATED = pgsql.SQL("array_to_string((string_to_array(s.prefix, '.'))[1:%(depth)s], '.')")
_WHOLE = pgsql.SQL("s.prefix")
_BEFORE_STOP = pgsql.SQL("AND s.prefix ~<~ %(stop)s")
_MATCHES = pgsql.SQL("s.prefix ~ {}")
_AND_LIVE = pgsql.SQL("AND ") + sql.LIVE
_NOTHING = pgsql.SQL("")


def list_namespaces_sql(
    op: ListNamespacesOp, schema: str, omit_expired: bool, enough: int | None
) -> tuple[pgsql.Composed, dict[str, Any]]:
    """The statement on ``schema`` and its parameters: the distinct
    (truncated) namespaces ``op`` matches, in byte order, all of them or at least the first
    ``enough`` (more when the walk emits out of order: see may_be_out_of_order)."""
    params: dict[str, Any] = {"start": "", "enough": enough, "depth": op.max_depth}
    conditions = [c for c in op.match_conditions or () if c.path]
    head = _literal_head(conditions)
    before = _NOTHING
    if head:
        params["start"], params["stop"] = head, head + "/"
        before = _BEFORE_STOP
    filters = []
    for i, condition in enumerate(conditions):
        params[f"match{i}"] = match_pattern(condition)
        filters.append(_MATCHES.format(pgsql.Placeholder(f"match{i}")))
    # A subtree may be skipped when whether it matches is fixed by its first max_depth
    # labels, which every namespace in it shares.
    skips = op.max_depth is not None and all(
        c.match_type == "prefix" and len(c.path) <= op.max_depth for c in conditions
    )
    statement = in_schema(
        _WALK,
        schema,
        truncated=_WHOLE if op.max_depth is None else _TRUNCATED,
        matched=sql.conditions(filters),
        after=_NEXT_SUBTREE if skips else _NEXT,
        before=before,
        live=_AND_LIVE if omit_expired else _NOTHING,
    )
    return statement, params


def may_be_out_of_order(truncated: list[str], max_depth: int | None) -> bool:
    """Whether a walk stopped early may have missed a smaller namespace.

    Namespaces come in byte order, so truncations do too, except in one case: a label at
    max_depth that extends a sibling label with a byte below '.' ("u-1" after "u"): the
    walk meets "a.u-1.x" (giving "a.u-1") before "a.u.x" (giving "a.u"). Such labels are
    rare; with one among the truncations found, the whole walk is read instead.
    """
    if max_depth is None:
        return False
    for text in truncated:
        labels = text.split(SEPARATOR)
        if len(labels) == max_depth and any(char < SEPARATOR for char in labels[-1][1:]):
            return True
    return False


def _literal_head(conditions: list[MatchCondition]) -> str:
    """The labels a prefix condition fixes before its first ``*``: the walk's range."""
    for condition in conditions:
        if condition.match_type != "prefix":
            continue
        labels = []
        for label in condition.path:
            if label == "*":
                break
            labels.append(label)
        if labels:
            return to_text(labels)
    return ""
