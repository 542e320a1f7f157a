"""The checkpointer's one way to a cursor: the package's ``cursors.cursor`` plus the
checkpoint schema's statement renderer and the fix for missing tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..cursors import Manager, MissingTables, Mode, cursor
from . import sql

# A statement template (and its named fixed parts) -> its text in one schema.
Render = Callable[..., str]
MISSING = MissingTables(
    "the LangGraph checkpoint tables or functions",
    "call PGSyncCheckpointSaver.setup() once (PostgresSaver.setup() creates the tables but "
    "not this saver's functions)",
)


@contextmanager
def checkpoint_cursor(
    manager: Manager, schema: str, mode: Mode = Mode.TRANSACTION
) -> Iterator[tuple[Any, Render]]:
    """A cursor run as ``mode`` says, and the renderer of the statements for ``schema``."""
    with MISSING.explained(schema), cursor(manager, mode) as cur:
        conn = cur.connection
        yield cur, lambda template, **parts: sql.rendered(conn, schema, template, **parts)
