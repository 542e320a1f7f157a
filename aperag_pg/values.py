"""What PostgreSQL can store, checked in Python before anything is sent.

Text must hold no NUL character (``text`` and ``jsonb`` cannot) and no lone surrogate
(``"\\ud800"`` has no UTF-8 form: the driver raises a bare UnicodeEncodeError, or the server
InvalidTextRepresentation). A value for a typed column must fit it: a ``varchar(n)`` takes
a string of at most n characters, an ``integer`` a whole number in 32 bits. Each check
raises ``InvalidInput`` naming where the value was and what to do, so a batch is refused
whole before its first write.

The stores never truncate: where LightRAG's pipeline shortens a value (content summaries
to 250 characters), it does so before the storage; at the storage, LightRAG's own asyncpg
storages fail on a value that does not fit, and these checks refuse it with a clear error.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput

INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
_VARCHAR = re.compile(r"(?:varchar|character varying)\((\d+)\)", re.I)
_INTEGERS = {"integer": INT4, "int4": INT4, "int": INT4, "bigint": INT8, "int8": INT8}


def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text``, or None: a NUL, or a lone surrogate."""
    if "\x00" in text:
        return (
            f"a NUL character (\\x00) at offset {text.index(chr(0))}, which PostgreSQL text "
            "and jsonb cannot store. Remove it first, e.g. text.replace('\\x00', '')"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"a lone surrogate ({text[exc.start]!r}) at offset {exc.start}, which has no "
                "UTF-8 form. It usually comes from decoding bytes with errors='surrogateescape' "
                "or from a broken JSON escape; decode the source with errors='replace'"
            )
    return None


def check_storable(value: Any, where: str) -> Any:
    """Reject a NUL or a lone surrogate anywhere in a string or JSON-like value; return the
    value unchanged otherwise."""
    if isinstance(value, str):
        reason = unstorable(value)
        if reason:
            raise InvalidInput(f"{where} contains {reason}; nothing was written.")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_storable(key, f"{where} (a key)")
            check_storable(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]")
    return value


def check_column(value: Any, sql_type: str, where: str) -> Any:
    """``value`` for a column of ``sql_type`` (``varchar(n)``, ``text``, ``integer``,
    ``bigint``, or an array of one of them), or InvalidInput; None (NULL) passes."""
    if value is None:
        return value
    kind = sql_type.strip().split()[0]
    if kind.endswith("[]"):
        if not isinstance(value, (list, tuple)):
            raise InvalidInput(
                f"{where} must be a list for its {sql_type} column, got {type(value).__name__}"
                f": {value!r:.60}; nothing was written."
            )
        for index, item in enumerate(value):
            check_column(item, kind[:-2], f"{where}[{index}]")
        return value
    bounds = _INTEGERS.get(kind.lower())
    if bounds is not None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(
                f"{where} must be a whole number for its {kind} column, got "
                f"{type(value).__name__}: {value!r:.60}; nothing was written."
            )
        if not bounds[0] <= value <= bounds[1]:
            raise InvalidInput(
                f"{where} is {value}, beyond what its {kind} column holds ({bounds[0]} to "
                f"{bounds[1]}); nothing was written."
            )
        return value
    if not isinstance(value, str):
        raise InvalidInput(
            f"{where} must be a string for its {kind} column, got {type(value).__name__}: "
            f"{value!r:.60}; nothing was written."
        )
    limit = _VARCHAR.fullmatch(kind)
    if limit and len(value) > int(limit.group(1)):
        raise InvalidInput(
            f"{where} is {len(value)} characters long ({value[:40]!r}...); its column holds at "
            f"most {limit.group(1)} (LightRAG's table). Shorten it before storing; nothing "
            "was written."
        )
    return check_storable(value, where)


def jsonb_text(value: Any, where: str) -> str:
    """``value`` as JSON for a jsonb column, so that it reads back equal: NaN, infinity,
    values JSON cannot hold, NUL characters and lone surrogates raise InvalidInput naming
    ``where``; floats Python writes with an exponent (``1e+16``) get a fraction, or jsonb
    would store them as integers. Checked in C on the whole text first; only a failure
    walks the value to name the culprit."""
    try:
        text = _dumps(value)
        if "e+" in text:  # maybe a float written with an exponent
            text = _keeping_floats(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{where} cannot be stored as JSON ({exc}): use strings, finite numbers (no NaN "
            "or infinity), booleans, null, and lists or dicts of those; nothing was written."
        ) from None
    if "\\u0000" in text:  # json escapes NUL
        check_storable(value, where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        check_storable(value, where)
        raise
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _keeping_floats(value: Any) -> str:
    """``value`` as JSON with every float Python writes as ``1e+16`` written out with a
    fraction (``10000000000000000.0``)."""
    marker = uuid.uuid4().hex
    floats: list[float] = []

    def marked(item: Any) -> Any:
        if isinstance(item, float) and "e+" in repr(item):
            floats.append(item)
            return f"{marker}{len(floats) - 1}"
        if isinstance(item, Mapping):
            return {key: marked(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [marked(inner) for inner in item]
        return item

    text = _dumps(marked(value))
    for index, number in enumerate(floats):
        text = text.replace(f'"{marker}{index}"', f"{number:.1f}", 1)
    return text
