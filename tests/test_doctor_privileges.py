"""doctor fails, naming the fix, for an application role that cannot use the memory store's
tables or the lease table; and the fix it names makes it pass. Real roles without CREATE,
the real command line."""

from __future__ import annotations

import re
import uuid

import psycopg2
import pytest

from aperag_pg.stores.leases import TABLE as LEASES

from .cli_support import run_cli, verdicts

APP_PASSWORD = "doctor-app-pw"
DML = "SELECT, INSERT, UPDATE, DELETE"


@pytest.fixture
def app_role(base_settings, admin_conn):
    """A schema the administrator made with init-schema (memory store vectors included),
    and a login role with USAGE on it and DML on all its tables, but no CREATE."""
    tag = uuid.uuid4().hex[:6]
    role, schema = f"doc_app_{tag}", f"doc_{tag}"
    init = run_cli(base_settings, "init-schema", "--memory-dims", "4", POSTGRES_SCHEMA=schema)
    assert init.returncode == 0, init.stdout + init.stderr
    with admin_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (APP_PASSWORD,))
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        cur.execute(f"GRANT {DML} ON ALL TABLES IN SCHEMA {schema} TO {role}")
    yield base_settings.replace(user=role, password=APP_PASSWORD, schema=schema)
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
        cur.execute(f"DROP OWNED BY {role}")
        cur.execute(f"DROP ROLE {role}")


def doctor(settings) -> tuple[int, str, dict[str, str]]:
    result = run_cli(settings, "doctor", POSTGRES_SCHEMA=settings.schema)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, verdicts(result.stdout)


def failed_lines(output: str, check: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"[FAIL] {check} ")]


def run_named_grant(admin_conn, line: str) -> None:
    """Run the GRANT a FAIL line names, as the tables' owner (the administrator here)."""
    grant = re.search(r'GRANT [^:(]+? TO "[^"]+"', line)
    assert grant, line
    with admin_conn.cursor() as cur:
        cur.execute(grant.group())


def test_the_baseline_passes(app_role):
    code, out, found = doctor(app_role)
    assert code == 0, out
    assert found["privileges"] == found["leases"] == "OK", out


def test_no_privileges_on_the_memory_store_tables_fail_with_the_grant(app_role, admin_conn):
    schema, role = app_role.schema, app_role.user
    with admin_conn.cursor() as cur:
        cur.execute(f"REVOKE ALL ON {schema}.store, {schema}.store_vectors FROM {role}")
    code, out, found = doctor(app_role)
    assert code == 1, out
    assert found["privileges"] == "FAIL", out
    [line] = failed_lines(out, "privileges")
    assert "memory store" in line and "store, store_vectors" in line, line
    assert "PGSyncStore" in line, line
    assert f'GRANT {DML} ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"' in line, line

    run_named_grant(admin_conn, line)
    code, out, _ = doctor(app_role)
    assert code == 0, out
    # and the role really can write there now (it could not before: InsufficientPrivilege)
    conn = psycopg2.connect(**app_role.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {schema}.store (prefix, key, value) VALUES ('p', 'k', '{{}}')"
            )
    finally:
        conn.rollback()
        conn.close()


def test_a_missing_lease_table_the_role_cannot_create_fails(app_role, base_settings, admin_conn):
    schema, role = app_role.schema, app_role.user
    with admin_conn.cursor() as cur:
        cur.execute(f"DROP TABLE {schema}.{LEASES}")
    code, out, found = doctor(app_role)
    assert code == 1, out
    assert found["leases"] == "FAIL" and found["privileges"] == "OK", out
    [line] = failed_lines(out, "leases")
    assert LEASES in line and "LightRAG writer" in line, line
    assert f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}"' in line, line
    assert "python -m aperag_pg init-schema" in line, line

    # the owner's init-schema, then the GRANT on the new table, as the line says
    init = run_cli(base_settings, "init-schema", POSTGRES_SCHEMA=schema)
    assert init.returncode == 0, init.stdout + init.stderr
    code, out, found = doctor(app_role)
    assert found["leases"] == "FAIL" and "lacks DELETE/INSERT/SELECT/UPDATE" in out, out
    run_named_grant(admin_conn, failed_lines(out, "leases")[0])
    code, out, _ = doctor(app_role)
    assert code == 0, out


def test_a_lease_table_without_dml_fails_with_the_grant(app_role, admin_conn):
    schema, role = app_role.schema, app_role.user
    with admin_conn.cursor() as cur:
        cur.execute(f"REVOKE UPDATE, DELETE ON {schema}.{LEASES} FROM {role}")
    code, out, found = doctor(app_role)
    assert code == 1, out
    assert found["leases"] == "FAIL" and found["privileges"] == "OK", out
    [line] = failed_lines(out, "leases")
    assert f"lacks DELETE/UPDATE on 1 lease table(s) in schema {schema!r} ({LEASES})" in line
    assert f'GRANT {DML} ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"' in line, line

    run_named_grant(admin_conn, line)
    code, out, _ = doctor(app_role)
    assert code == 0, out


def test_a_lease_table_without_its_fence_function_fails_with_init_schema(
    app_role, base_settings, admin_conn
):
    """A lease table left by an older aperag_pg: writers need the fence function too."""
    from aperag_pg.stores.leases import FENCE_SIGNATURE

    schema = app_role.schema
    with admin_conn.cursor() as cur:
        cur.execute(f"DROP FUNCTION {schema}.{FENCE_SIGNATURE}")
    code, out, found = doctor(app_role)
    assert code == 1 and found["leases"] == "FAIL", out
    [line] = failed_lines(out, "leases")
    assert "fence function" in line and "python -m aperag_pg init-schema" in line, line
    init = run_cli(base_settings, "init-schema", POSTGRES_SCHEMA=schema)
    assert init.returncode == 0, init.stdout + init.stderr
    code, out, _ = doctor(app_role)
    assert code == 0, out


def test_a_fence_function_the_role_may_not_execute_fails_with_the_grant(app_role, admin_conn):
    from aperag_pg.stores.leases import FENCE_SIGNATURE

    schema, role = app_role.schema, app_role.user
    with admin_conn.cursor() as cur:
        cur.execute(f"REVOKE EXECUTE ON FUNCTION {schema}.{FENCE_SIGNATURE} FROM PUBLIC")
    code, out, found = doctor(app_role)
    assert code == 1 and found["leases"] == "FAIL", out
    [line] = failed_lines(out, "leases")
    grant = f'GRANT EXECUTE ON FUNCTION "{schema}".{FENCE_SIGNATURE} TO "{role}"'
    assert grant in line, line
    with admin_conn.cursor() as cur:
        cur.execute(grant)
    code, out, _ = doctor(app_role)
    assert code == 0, out
