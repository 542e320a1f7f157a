"""langgraph-checkpoint-postgres 3.2.0's own store tests (``tests/test_store.py`` and
``tests/test_async_store.py`` of its sdist) against PGSyncStore, one case here per upstream
test id.

The sdist is downloaded at test time, checked by its pinned sha256 and cached
(``devtools/upstream_tests.py``); its files run unchanged in pytest subprocesses whose
root conftest makes their ``PostgresStore`` / ``AsyncPostgresStore`` our store, on the
session's PostgreSQL (``tests/upstream_store/``). Upstream's ``store`` tests run in its
``default`` connection mode only (``pipe`` and ``pool`` are the same store here).

Every upstream test must pass, except those in ``EXPECTED_FAILURES``: each fails because
of a difference the README documents, and is asserted to fail that way, so the list
stays true.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.services import create_database, drop_database

from .upstream_store.runner import Outcome, collect_case_ids, run_cases

# Pytest subprocesses for about a minute and a half (upstream's TTL test sleeps 17 s).
pytestmark = pytest.mark.processes

NOT_COLLECTED = "upstream-tests-not-collected"

# Why a listed test fails: the README's words, and a regex its failure text must match.
NO_SWEEPER_THREAD = (
    "README, TTL: start_ttl_sweeper() starts no thread (the Celery beat task "
    "aperag_pg.sweep_store deletes expired items), so the sleeping TTL test still finds "
    "the expired item upstream's sweeper thread would have deleted",
    r"assert len\((res|results)\) == 0\s+E\s+AssertionError: assert 1 == 0",
)
SYNC_CALLS_ON_THE_LOOP = (
    "README, a sync call inside a running event loop: it runs (blocking that loop for the "
    "call) instead of raising AsyncPostgresStore's InvalidStateError",
    r"DID NOT RAISE InvalidStateError",
)
UPSTREAM_INTERNALS = (
    "README, no private upstream internals: the test counts calls of upstream's own "
    "langgraph.checkpoint.postgres._ainternal.get_connection, which PGSyncStore never "
    "calls (its batch takes one connection of the worker pool)",
    r"assert checkout_count == 1\s+E\s+assert 0 == 1",
)

# upstream test id -> why it fails on PGSyncStore
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    "test_store.py::test_store_ttl[default]": NO_SWEEPER_THREAD,
    "test_async_store.py::test_store_ttl[default]": NO_SWEEPER_THREAD,
    "test_async_store.py::test_no_running_loop[default]": SYNC_CALLS_ON_THE_LOOP,
    "test_async_store.py::test_abatch_uses_single_pool_checkout": UPSTREAM_INTERNALS,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    try:
        cases = list(collect_case_ids())
    except Exception as exc:  # noqa: BLE001 - the one case below fails with the reason
        metafunc.parametrize("case", [f"{NOT_COLLECTED}: {exc}"], ids=[NOT_COLLECTED])
        return
    metafunc.parametrize("case", cases, ids=cases)


@pytest.fixture(scope="session")
def upstream_outcomes(
    request: pytest.FixtureRequest, base_settings, tmp_path_factory
) -> Iterator[tuple[dict[str, Outcome], str]]:
    """One run of the upstream cases this session selected. Upstream's tests create a
    database per test through an admin database, here one of their own (their conftest
    empties tables in it)."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_upstream_store_case"
        and not item.callspec.params["case"].startswith(NOT_COLLECTED)
    ]
    admin_db = f"{base_settings.database}_upstream"
    create_database(base_settings, admin_db, extensions=())
    try:
        server = base_settings.replace(database=admin_db).to_env()
        server["POSTGRES_MAX_CONNECTIONS"] = "4"
        yield run_cases(selected, server, Path(tmp_path_factory.mktemp("upstream-store")))
    finally:
        drop_database(base_settings, admin_db)


def test_expected_failures_name_upstream_tests() -> None:
    """Every listed id is one upstream still has, in the mode that runs."""
    assert sorted(set(EXPECTED_FAILURES) - set(collect_case_ids())) == []


def test_upstream_store_case(case: str, upstream_outcomes) -> None:
    if case.startswith(NOT_COLLECTED):
        pytest.fail(case, pytrace=False)
    outcomes, output = upstream_outcomes
    outcome = outcomes.get(case)
    if outcome is None:
        pytest.fail(f"the upstream run reported nothing for {case}; its output:\n{output}")
    assert outcome.outcome != "skipped", f"upstream skipped {case}: {outcome.text}"
    expected = EXPECTED_FAILURES.get(case)
    if expected is None:
        if outcome.outcome == "failed":
            pytest.fail(f"upstream's {case} fails on PGSyncStore:\n{outcome.text}", pytrace=False)
        return
    why, pattern = expected
    assert outcome.outcome == "failed", (
        f"{case} now passes on PGSyncStore: remove it from EXPECTED_FAILURES ({why})"
    )
    assert re.search(pattern, outcome.text), (
        f"{case} fails, but not as listed ({why}; expected /{pattern}/):\n{outcome.text}"
    )
