"""Namespaces as stored (labels joined by dots) and the SQL that finds them.

``list_namespaces`` walks the distinct namespaces on ``store_prefix_idx`` (upstream's
``text_pattern_ops`` index, byte order): one index probe per namespace, never per item,
and a namespace deeper than ``max_depth`` skips its whole subtree in one probe. Without
``max_depth`` the walk stops as soon as ``offset + limit`` namespaces matched (PostgreSQL
evaluates a recursive query only as far as its reader fetches). Upstream reads and splits
every row of the table. Namespaces come back in byte order (upstream: the database's
collation, the same order under the C collation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import ListNamespacesOp, MatchCondition

SEPARATOR = "."


def to_text(namespace: Sequence[str]) -> str:
    return SEPARATOR.join(namespace)


def from_text(prefix: str) -> tuple[str, ...]:
    return tuple(prefix.split(SEPARATOR))


def prefix_condition(namespace_prefix: Sequence[str], column: str) -> tuple[str, list[str]]:
    """``column`` is the namespace or below it: a label boundary, so ``("a",)`` never
    matches ``("ab",)``, and LIKE's wildcards in labels are taken literally."""
    if not namespace_prefix:
        return "true", []
    path = to_text(namespace_prefix)
    return f"({column} = %s OR {column} LIKE %s ESCAPE '\\')", [path, f"{_like_literal(path)}.%"]


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def match_pattern(condition: MatchCondition) -> str:
    """A POSIX regex for a prefix or suffix condition on whole labels (``*``: any one)."""
    body = r"\.".join("[^.]+" if label == "*" else re.escape(label) for label in condition.path)
    if condition.match_type == "suffix":
        return rf"(^|\.){body}$"
    return rf"^{body}(\.|$)"


# ~>=~ and ~<~ are the byte-order operators of text_pattern_ops: they use the index.
_WALK = """
WITH RECURSIVE walk(prefix) AS (
    (SELECT s.prefix FROM {schema}.store AS s
     WHERE s.prefix ~>=~ %(start)s {before} {live}
     ORDER BY s.prefix USING ~<~ LIMIT 1)
    UNION ALL
    SELECT next.prefix FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT s.prefix FROM {schema}.store AS s
        WHERE s.prefix ~>=~ ({after}) {before} {live}
        ORDER BY s.prefix USING ~<~ LIMIT 1
    ) AS next
)
"""
# The smallest text after ``w.prefix`` (NUL cannot be in text, so chr(1) is next), or for a
# namespace deeper than max_depth, the first after its truncation's whole subtree
# ("a.b" + "/" follows every "a.b.*": '/' is the byte after '.').
_NEXT = "w.prefix || chr(1)"
_NEXT_SUBTREE = (
    "CASE WHEN cardinality(string_to_array(w.prefix, '.')) > %(depth)s "
    "THEN array_to_string((string_to_array(w.prefix, '.'))[1:%(depth)s], '.') || '/' "
    "ELSE w.prefix || chr(1) END"
)
_TRUNCATED = "array_to_string((string_to_array(prefix, '.'))[1:%(depth)s], '.')"


def list_namespaces_sql(op: ListNamespacesOp, live: str) -> tuple[str, dict[str, Any]]:
    """The statement (``{schema}`` still to fill) and its parameters for ``op``."""
    params: dict[str, Any] = {"start": "", "limit": op.limit, "offset": op.offset}
    conditions = [c for c in op.match_conditions or () if c.path]
    head = _literal_head(conditions)
    before = ""
    if head:
        params["start"], params["stop"] = head, head + "/"
        before = "AND s.prefix ~<~ %(stop)s"
    filters = []
    for i, condition in enumerate(conditions):
        params[f"match{i}"] = match_pattern(condition)
        filters.append(f"prefix ~ %(match{i})s")
    where = f"WHERE {' AND '.join(filters)}" if filters else ""
    live_sql = f"AND {live}" if live else ""
    if op.max_depth is None:
        walk = _fill(_WALK, after=_NEXT, before=before, live=live_sql)
        # No ORDER BY: the walk is already in byte order, and sorting would read it all.
        return f"{walk} SELECT prefix FROM walk {where} LIMIT %(limit)s OFFSET %(offset)s", params
    params["depth"] = op.max_depth
    # A subtree may be skipped when whether it matches is fixed by its first max_depth
    # labels, which every namespace in it shares.
    skips = all(c.match_type == "prefix" and len(c.path) <= op.max_depth for c in conditions)
    walk = _fill(_WALK, after=_NEXT_SUBTREE if skips else _NEXT, before=before, live=live_sql)
    select = (
        f'SELECT DISTINCT {_TRUNCATED} COLLATE "C" AS prefix FROM walk {where} '
        "ORDER BY 1 LIMIT %(limit)s OFFSET %(offset)s"
    )
    return f"{walk} {select}", params


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


def _fill(template: str, **parts: str) -> str:
    for name, text in parts.items():
        template = template.replace("{" + name + "}", text)
    return template
