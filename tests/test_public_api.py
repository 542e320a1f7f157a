"""The package's top-level names: what a user imports, without the optional extras."""

from __future__ import annotations

import subprocess
import sys

import aperag_pg


def test_the_public_names_are_importable_from_the_package():
    for name in aperag_pg.__all__:
        assert getattr(aperag_pg, name) is not None, name
    from aperag_pg.manager import PostgreSQLSyncConnectionManager
    from aperag_pg.worker import run_async

    assert aperag_pg.PostgreSQLSyncConnectionManager is PostgreSQLSyncConnectionManager
    assert aperag_pg.run_async is run_async


def test_importing_the_package_needs_neither_lightrag_nor_langgraph():
    code = (
        "import sys, aperag_pg; "
        "print(sorted(m for m in ('lightrag', 'langgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_lightrag_storage_is_exported_from_aperag_pg_lightrag():
    """The README imports the four facades from ``aperag_pg.lightrag``: each storage that
    register() names to LightRAG is exported there, so the two cannot drift apart."""
    import aperag_pg.lightrag as public
    from aperag_pg.lightrag import storages
    from aperag_pg.lightrag.registry import FACADES

    assert len(FACADES) == 4
    for name in FACADES.values():
        assert name in public.__all__, name
        assert getattr(public, name) is getattr(storages, name), name
