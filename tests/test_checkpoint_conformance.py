"""langgraph-checkpoint-conformance 0.0.2 against PGSyncCheckpointSaver: every capability.

The suite is an async runner (``validate``); it is driven here with ``asyncio.run``
from a plain pytest test, on a schema of its own, and must report FULL conformance
with all eight capabilities detected and passing.
"""

from __future__ import annotations

from .checkpoint_support import run_conformance_suite


def test_conformance_suite_passes_every_capability(manager, admin_conn, capsys):
    run_conformance_suite(admin_conn, capsys)
