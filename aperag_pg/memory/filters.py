"""A search ``filter`` as SQL over the item's jsonb ``value``.

What a filter means here (PostgresStore 3.2.0 differs where marked):
- ``{"k": v}`` and ``{"k": {"$eq": v}}``: the value at ``k`` equals ``v`` as JSON
  (``1`` equals ``1.0``). A dict without operators matches key by key, as InMemoryStore
  does (upstream raises "Unsupported operator").
- ``$ne``: not equal, and a missing key counts as not equal (InMemoryStore's reading;
  upstream drops items that lack the key).
- ``$gt $gte $lt $lte``: a number compares with numbers, a boolean with booleans, a
  string with strings (by code point, as Python compares them); values of another JSON
  type never match. Upstream compares the text of both sides, so ``10 < 9`` and
  ``"10" > 9``.
- A key with dots is a path into nested objects: ``{"a.b": 1}`` matches
  ``{"a": {"b": 1}}`` (upstream looks for a top-level key named ``a.b``).
Equality to a scalar is jsonb containment (``@>``), and comparisons are a strict jsonpath
(no unwrapping of arrays): the cheapest forms PostgreSQL has for these meanings. Values are
always parameters; a key reaches the jsonpath as a JSON string literal, also a parameter.
The conditions are constant SQL (``psycopg2.sql``) with ``%s`` placeholders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from psycopg2 import sql

from ..errors import InvalidInput
from ..values import jsonb_text

_ORDER = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = ("$eq", "$ne", *_ORDER)
_COMPARISON = sql.SQL("jsonb_path_match(s.value, %s::jsonpath, %s::jsonb, true)")
_CONTAINS = sql.SQL("s.value @> %s::jsonb")
_EQUALS_AT_PATH = sql.SQL("s.value #> %s::text[] = %s::jsonb")
# "not equal" holds for a missing key too: NOT (...) IS TRUE is never null
_NOT = sql.SQL("(({}) IS NOT TRUE)")


def filter_sql(filter: Mapping[str, Any] | None) -> tuple[list[sql.Composable], list[Any]]:
    """The conditions (on ``s.value``) and their parameters, in order."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    if not filter:
        return conditions, params
    if not isinstance(filter, Mapping):
        raise InvalidInput(f"search filter must be a dict, got {type(filter).__name__}.")
    for key, wanted in filter.items():
        _conditions_for(_path(key), wanted, conditions, params)
    return conditions, params


def _path(key: Any) -> list[str]:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise InvalidInput(
            f"search filter key {key!r} is not usable: use a non-empty string without NUL "
            "characters (dots separate nested keys)."
        )
    return key.split(".")


def _conditions_for(path: list[str], wanted: Any, conditions: list, params: list) -> None:
    if isinstance(wanted, Mapping) and any(str(k).startswith("$") for k in wanted):
        for operator, operand in wanted.items():
            _operator(path, operator, operand, conditions, params)
    elif isinstance(wanted, Mapping) and wanted:
        for key, inner in wanted.items():  # nested match, key by key
            _conditions_for(path + _path(key), inner, conditions, params)
    else:
        _equality(path, wanted, conditions, params, negate=False)


def _operator(path: list[str], operator: Any, operand: Any, conditions: list, params: list) -> None:
    if operator in ("$eq", "$ne"):
        _equality(path, operand, conditions, params, negate=operator == "$ne")
    elif operator in _ORDER:
        _check_comparable(path, operator, operand)
        keys = "".join(f".{json.dumps(key, ensure_ascii=False)}" for key in path)
        conditions.append(_COMPARISON)
        params.extend(
            [f"strict ${keys} {_ORDER[operator]} $operand", _json(path, {"operand": operand})]
        )
    else:
        raise InvalidInput(
            f"search filter on {'.'.join(path)!r} uses the operator {operator!r}; "
            f"use one of {', '.join(OPERATORS)}."
        )


def _equality(path: list[str], wanted: Any, conditions: list, params: list, negate: bool) -> None:
    if wanted is None or isinstance(wanted, (str, int, float, bool)):
        nested: Any = wanted
        for key in reversed(path):
            nested = {key: nested}
        condition = _CONTAINS
        params.append(_json(path, nested))
    else:  # a list (or an empty dict): the whole value at the path
        condition = _EQUALS_AT_PATH
        params.extend([path, _json(path, wanted)])
    conditions.append(_NOT.format(condition) if negate else condition)


def _check_comparable(path: list[str], operator: str, operand: Any) -> None:
    """An ordering operand must be a number, a string or a boolean."""
    if isinstance(operand, bool):
        return
    if isinstance(operand, (int, float)) and math.isfinite(operand):
        return
    if isinstance(operand, str) and "\x00" not in operand:
        return
    raise InvalidInput(
        f"search filter {operator} on {'.'.join(path)!r} compares with {operand!r}; use a "
        "finite number, a string or a boolean."
    )


def _json(path: list[str], value: Any) -> str:
    return jsonb_text(value, f"search filter value for {'.'.join(path)!r}")
