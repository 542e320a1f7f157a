"""langgraph-checkpoint-conformance 0.0.2 against PGSyncCheckpointSaver: every capability.

The suite is an async runner (``validate``); it is driven here with ``asyncio.run``
from a plain pytest test, on a schema of its own, and must report FULL conformance
with all eight capabilities detected and passing.
"""

from __future__ import annotations

import asyncio

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from aperag_pg.checkpoint import PGSyncCheckpointSaver

from .checkpoint_support import drop_schema, new_schema


def test_conformance_suite_passes_every_capability(manager, admin_conn, capsys):
    schema = new_schema("conformance")
    created: list[PGSyncCheckpointSaver] = []

    @checkpointer_test(name="PGSyncCheckpointSaver")
    async def factory():
        saver = PGSyncCheckpointSaver(schema=schema)
        await saver.asetup()
        created.append(saver)
        yield saver

    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}/{test}:\n{error}")

    try:
        report = asyncio.run(
            validate(factory, progress=ProgressCallbacks(on_test_result=on_result))
        )
    finally:
        drop_schema(admin_conn, schema)

    report.print_report()
    counts = {
        name: (r.tests_passed, r.tests_failed, r.tests_skipped)
        for name, r in report.results.items()
    }
    with capsys.disabled():
        print(f"\nconformance level: {report.conformance_level()}")
        for name, (passed, failed, skipped) in sorted(counts.items()):
            print(f"  {name:16s} passed={passed} failed={failed} skipped={skipped}")

    assert not failures, "\n\n".join(failures)
    assert (
        {c.value for c in ALL_CAPABILITIES}
        == set(report.results)
        == {
            "put",
            "put_writes",
            "get_tuple",
            "list",
            "delete_thread",
            "prune",
            "delete_for_runs",
            "copy_thread",
        }
    )
    for name, result in report.results.items():
        assert result.detected, f"{name} was not detected as implemented"
        assert result.passed is True, f"{name}: {result.failures}"
        assert result.tests_passed > 0 and result.tests_failed == 0 and result.tests_skipped == 0
    assert report.conformance_level() == "FULL"
    assert report.passed_all_base() and report.passed_all()
    assert len(created) == 8  # a fresh saver per capability, as the suite intends
