"""The checkpointer's one way to a cursor: the package's ``cursors.cursor`` plus the
checkpoint schema's statement renderer and the fix for missing tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.errors

from ..cursors import Manager, Mode, cursor
from ..errors import SchemaError, first_line
from . import sql

# A statement template (and its named fixed parts) -> its text in one schema.
Render = Callable[..., str]


@contextmanager
def checkpoint_cursor(
    manager: Manager, schema: str, mode: Mode = Mode.TRANSACTION
) -> Iterator[tuple[Any, Render]]:
    """A cursor run as ``mode`` says, and the renderer of the statements for ``schema``."""
    with _explained(schema), cursor(manager, mode) as cur:
        conn = cur.connection
        yield cur, lambda template, **parts: sql.rendered(conn, schema, template, **parts)


@contextmanager
def _explained(schema: str) -> Iterator[None]:
    """Turn "no such table / function" into the fix: setup() has not run in this schema."""
    try:
        yield
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedFunction) as exc:
        raise SchemaError(
            f"the LangGraph checkpoint tables or functions are missing in schema {schema!r} "
            f"({first_line(exc)}). Fix: call PGSyncCheckpointSaver.setup() "
            "once (PostgresSaver.setup() creates the tables but not this saver's functions)."
        ) from exc
