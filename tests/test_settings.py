"""PostgresSettings: loading, precedence, validation and password secrecy."""

from __future__ import annotations

import logging
import uuid

import psycopg2
import pytest

from aperag_pg.errors import ConfigError, DatabaseUnavailable
from aperag_pg.manager import PostgreSQLSyncConnectionManager
from aperag_pg.settings import PostgresSettings

NO_DOTENV = "/nonexistent/.env"


@pytest.mark.parametrize(
    ("env", "variable", "detail"),
    [
        ({"POSTGRES_PORT": "five"}, "POSTGRES_PORT", "whole number"),
        ({"POSTGRES_PORT": "70000"}, "POSTGRES_PORT", "1 to 65535"),
        ({"POSTGRES_MAX_CONNECTIONS": "0"}, "POSTGRES_MAX_CONNECTIONS", "1 to 1000"),
        ({"POSTGRES_MAX_CONNECTIONS": "2.5"}, "POSTGRES_MAX_CONNECTIONS", "whole number"),
        (
            {"POSTGRES_MIN_CONNECTIONS": "8", "POSTGRES_MAX_CONNECTIONS": "4"},
            "POSTGRES_MIN_CONNECTIONS",
            "greater than POSTGRES_MAX_CONNECTIONS",
        ),
        ({"POSTGRES_MIN_CONNECTIONS": "-1"}, "POSTGRES_MIN_CONNECTIONS", "0 to 1000"),
        ({"POSTGRES_POOL_TIMEOUT": "soon"}, "POSTGRES_POOL_TIMEOUT", "a number"),
        ({"POSTGRES_POOL_TIMEOUT": "0"}, "POSTGRES_POOL_TIMEOUT", "out of range"),
        ({"POSTGRES_POOL_TIMEOUT": "inf"}, "POSTGRES_POOL_TIMEOUT", "a number"),
        ({"POSTGRES_CONNECT_TIMEOUT": "0"}, "POSTGRES_CONNECT_TIMEOUT", "out of range"),
        ({"POSTGRES_STATEMENT_TIMEOUT": "-5"}, "POSTGRES_STATEMENT_TIMEOUT", "out of range"),
        ({"POSTGRES_MAX_LIFETIME": "0"}, "POSTGRES_MAX_LIFETIME", "out of range"),
        ({"POSTGRES_MAX_IDLE": "x"}, "POSTGRES_MAX_IDLE", "a number"),
        ({"POSTGRES_SSL_MODE": "always"}, "POSTGRES_SSL_MODE", "verify-full"),
        ({"POSTGRES_VECTOR_INDEX_TYPE": "annoy"}, "POSTGRES_VECTOR_INDEX_TYPE", "HNSW, IVFFLAT"),
        ({"POSTGRES_HNSW_M": "1"}, "POSTGRES_HNSW_M", "2 to 100"),
        ({"POSTGRES_HNSW_EF": "many"}, "POSTGRES_HNSW_EF", "whole number"),
        ({"POSTGRES_IVFFLAT_LISTS": "0"}, "POSTGRES_IVFFLAT_LISTS", "1 to 32768"),
        ({"POSTGRES_SCHEMA": 'x"; DROP TABLE t; --'}, "POSTGRES_SCHEMA", "letters, digits"),
        ({"POSTGRES_SCHEMA": "s" * 64}, "POSTGRES_SCHEMA", "1 to 63"),
        ({"POSTGRES_DSN": "host=db password=x y"}, "POSTGRES_DSN", "not a valid"),
    ],
)
def test_each_invalid_value_names_the_variable(env, variable, detail):
    with pytest.raises(ConfigError) as info:
        PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    message = str(info.value)
    assert variable in message
    assert detail in message


def test_defaults_and_types():
    s = PostgresSettings.from_env({}, dotenv_path=NO_DOTENV)
    assert (s.host, s.port, s.user, s.database, s.schema) == (
        "localhost",
        5432,
        "postgres",
        "postgres",
        "public",
    )
    assert s.workspace is None
    assert isinstance(s.pool_timeout, float) and isinstance(s.max_connections, int)


def test_all_variables_are_read():
    env = {
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6432",
        "POSTGRES_USER": "rag",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_DATABASE": "ragdb",
        "POSTGRES_WORKSPACE": "tenant_a",
        "POSTGRES_SCHEMA": "rag",
        "POSTGRES_MIN_CONNECTIONS": "2",
        "POSTGRES_MAX_CONNECTIONS": "7",
        "POSTGRES_POOL_TIMEOUT": "2.5",
        "POSTGRES_CONNECT_TIMEOUT": "3",
        "POSTGRES_STATEMENT_TIMEOUT": "15000",
        "POSTGRES_MAX_LIFETIME": "120",
        "POSTGRES_MAX_IDLE": "30",
        "POSTGRES_SSL_MODE": "VERIFY-FULL",
        "POSTGRES_SSL_CERT": "/certs/client.crt",
        "POSTGRES_SSL_KEY": "/certs/client.key",
        "POSTGRES_SSL_ROOT_CERT": "/certs/ca.crt",
        "POSTGRES_SSL_CRL": "/certs/ca.crl",
        "POSTGRES_APPLICATION_NAME": "ingest",
    }
    s = PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    kwargs = s.connect_kwargs()
    assert kwargs == {
        "host": "db.internal",
        "port": 6432,
        "user": "rag",
        "password": "pw",
        "dbname": "ragdb",
        "connect_timeout": 3,
        "sslmode": "verify-full",
        "sslcert": "/certs/client.crt",
        "sslkey": "/certs/client.key",
        "sslrootcert": "/certs/ca.crt",
        "sslcrl": "/certs/ca.crl",
        "application_name": "ingest",
        "options": "-c statement_timeout=15000",
    }
    assert (s.workspace, s.schema, s.min_connections, s.max_connections) == (
        "tenant_a",
        "rag",
        2,
        7,
    )
    assert (s.pool_timeout, s.max_lifetime, s.max_idle) == (2.5, 120.0, 30.0)


def test_postgres_db_alias_and_database_precedence():
    assert PostgresSettings.from_env({"POSTGRES_DB": "a"}, dotenv_path=NO_DOTENV).database == "a"
    both = {"POSTGRES_DB": "a", "POSTGRES_DATABASE": "b"}
    assert PostgresSettings.from_env(both, dotenv_path=NO_DOTENV).database == "b"


def test_dsn_with_overrides():
    env = {
        "DATABASE_URL": "postgresql://u:p%40ss@db:6000/app?sslmode=require&target_session_attrs=any",
        "POSTGRES_PORT": "7000",
    }
    s = PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    assert (s.user, s.password, s.host, s.port, s.database, s.ssl_mode) == (
        "u",
        "p@ss",
        "db",
        7000,
        "app",
        "require",
    )
    assert s.connect_kwargs()["target_session_attrs"] == "any"
    # POSTGRES_DSN wins over DATABASE_URL
    env["POSTGRES_DSN"] = "host=other dbname=x"
    assert PostgresSettings.from_env(env, dotenv_path=NO_DOTENV).host == "other"


def test_dotenv_is_loaded_and_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("POSTGRES_HOST=from-dotenv\nPOSTGRES_PORT=6001\nPOSTGRES_USER=dotenv_user\n")
    s = PostgresSettings.from_env({"POSTGRES_PORT": "7001"}, dotenv_path=dotenv)
    assert (s.host, s.port, s.user) == ("from-dotenv", 7001, "dotenv_user")


def test_dotenv_found_from_working_directory(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("POSTGRES_APPLICATION_NAME=cwd_app\n")
    monkeypatch.chdir(tmp_path)
    assert PostgresSettings.from_env({}).application_name == "cwd_app"


SECRET = "s3cr et'\"@/%x"


def test_password_absent_from_repr_str_and_redacted_dsn():
    s = PostgresSettings(password=SECRET)
    for text in (repr(s), str(s), s.redacted_dsn(), s.describe()):
        assert SECRET not in text
        assert "s3cr" not in text
    assert "password=***" in s.redacted_dsn()


def test_password_absent_from_config_errors():
    env = {"POSTGRES_PASSWORD": SECRET, "POSTGRES_PORT": "bad"}
    with pytest.raises(ConfigError) as info:
        PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    assert "s3cr" not in str(info.value)
    env = {"POSTGRES_DSN": f"postgresql://u:{SECRET}@h/db x"}
    with pytest.raises(ConfigError) as info:
        PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    assert "s3cr" not in str(info.value)


@pytest.fixture
def hostile_role(admin_conn):
    """A login role whose password holds spaces, quotes, @, / and %."""
    name = f"apg_hostile_pw_{uuid.uuid4().hex[:6]}"  # the server's roles are shared
    with admin_conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {name}")
        cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", (SECRET,))
    yield name
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        cur.execute(f"DROP ROLE IF EXISTS {name}")


def test_hostile_password_works_through_the_pool(base_settings, hostile_role):
    settings = base_settings.replace(user=hostile_role, password=SECRET)
    PostgreSQLSyncConnectionManager.initialize(settings)
    try:
        row = PostgreSQLSyncConnectionManager.execute_query(
            "SELECT current_user AS u", fetch_one=True
        )
        assert row["u"] == hostile_role
    finally:
        PostgreSQLSyncConnectionManager.close()


def test_hostile_password_works_in_dsn(base_settings, hostile_role):
    from urllib.parse import quote

    url = (
        f"postgresql://{hostile_role}:{quote(SECRET, safe='')}@{base_settings.host}:"
        f"{base_settings.port}/{base_settings.database}"
    )
    settings = PostgresSettings.from_env({"DATABASE_URL": url}, dotenv_path=NO_DOTENV)
    assert settings.password == SECRET
    conn = psycopg2.connect(**settings.connect_kwargs())
    conn.close()
    conn = psycopg2.connect(settings.dsn())
    conn.close()


def test_wrong_password_error_and_logs_do_not_leak_it(base_settings, hostile_role, caplog):
    wrong = SECRET + "-wrong"
    settings = base_settings.replace(user=hostile_role, password=wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabaseUnavailable) as info:
        PostgreSQLSyncConnectionManager.initialize(settings)
    message = str(info.value)
    assert "password authentication failed" in message
    assert "POSTGRES_PASSWORD" in message
    assert "s3cr" not in message
    assert "s3cr" not in caplog.text
    assert isinstance(info.value, psycopg2.OperationalError)


def test_visibility_timeout_is_validated():
    from aperag_pg.environment import DEFAULT_VISIBILITY_TIMEOUT, visibility_timeout

    assert visibility_timeout({}) == DEFAULT_VISIBILITY_TIMEOUT
    assert visibility_timeout({"CELERY_VISIBILITY_TIMEOUT": " 86400 "}) == 86400
    for bad in ("59", "-5", "1h", "1.5"):
        with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT"):
            visibility_timeout({"CELERY_VISIBILITY_TIMEOUT": bad})


def test_writer_lease_ttl_is_validated_against_the_visibility_timeout():
    from aperag_pg.environment import DEFAULT_WRITER_LEASE_TTL, writer_lease_ttl

    assert writer_lease_ttl({}) == DEFAULT_WRITER_LEASE_TTL
    assert writer_lease_ttl({"LIGHTRAG_WRITER_LEASE_TTL": " 3 "}) == 3.0
    assert writer_lease_ttl({"LIGHTRAG_WRITER_LEASE_TTL": "7199.5"}) == 7199.5
    for bad in ("2.9", "0", "-1", "nan", "inf", "1m", "7200"):
        with pytest.raises(ConfigError, match="LIGHTRAG_WRITER_LEASE_TTL.*CELERY_VISIBILITY"):
            writer_lease_ttl({"LIGHTRAG_WRITER_LEASE_TTL": bad})
    with pytest.raises(ConfigError, match=r"less than CELERY_VISIBILITY_TIMEOUT \(60\)"):
        writer_lease_ttl({"LIGHTRAG_WRITER_LEASE_TTL": "60", "CELERY_VISIBILITY_TIMEOUT": "60"})


def test_every_password_keyword_is_redacted():
    env = {
        "POSTGRES_DSN": "postgresql://u:pw-one@h/db?sslpassword=key-secret&sslmode=require",
    }
    s = PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    assert s.connect_kwargs()["sslpassword"] == "key-secret"  # still passed to libpq
    for text in (repr(s), str(s), s.redacted_dsn(), s.describe()):
        assert "pw-one" not in text and "key-secret" not in text
    assert "sslpassword=***" in s.redacted_dsn() and "password=***" in s.redacted_dsn()


def test_statement_timeout_reaches_the_server_beside_the_dsns_options(base_settings):
    """The DSN's options (-c work_mem=8MB) and POSTGRES_STATEMENT_TIMEOUT both apply."""
    dsn = psycopg2.extensions.make_dsn(**base_settings.connect_kwargs(), options="-c work_mem=8MB")
    env = {"POSTGRES_DSN": dsn, "POSTGRES_STATEMENT_TIMEOUT": "100"}
    settings = PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    PostgreSQLSyncConnectionManager.initialize(settings)
    try:
        row = PostgreSQLSyncConnectionManager.execute_query(
            "SELECT current_setting('work_mem') AS w, current_setting('statement_timeout') AS t",
            fetch_one=True,
        )
        assert (row["w"], row["t"]) == ("8MB", "100ms")
        with pytest.raises(psycopg2.errors.QueryCanceled):
            PostgreSQLSyncConnectionManager.execute_query("SELECT pg_sleep(2)")
    finally:
        PostgreSQLSyncConnectionManager.close()


def test_an_empty_variable_counts_as_unset_for_every_variable():
    """docker-compose passes ${VAR:-} as an empty string: that must mean "not set"."""
    dsn = "postgresql://u:dsn-secret@dbhost:6000/dsn_db"
    empty = {"POSTGRES_DSN": dsn, "POSTGRES_PASSWORD": "", "POSTGRES_DATABASE": "  "}
    empty |= {"POSTGRES_PORT": "", "POSTGRES_HOST": "", "POSTGRES_USER": ""}
    s = PostgresSettings.from_env(empty, dotenv_path=NO_DOTENV)
    assert (s.host, s.port, s.user, s.password, s.database) == (
        "dbhost",
        6000,
        "u",
        "dsn-secret",
        "dsn_db",
    )
    alias = {"POSTGRES_DATABASE": "", "POSTGRES_DB": "mydb"}
    assert PostgresSettings.from_env(alias, dotenv_path=NO_DOTENV).database == "mydb"
    assert PostgresSettings.from_env({"POSTGRES_DSN": ""}, dotenv_path=NO_DOTENV).host == (
        "localhost"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POSTGRES_DSN": "postgresql://u:pw@h:abc/db"}, "POSTGRES_DSN (port)='abc'"),
        ({"DATABASE_URL": "postgresql://u@h:99999/db"}, "DATABASE_URL (port)=99999"),
        ({"POSTGRES_DSN": "host=h connect_timeout=soon"}, "POSTGRES_DSN (connect_timeout)"),
        ({"POSTGRES_PORT": "5432,x"}, "POSTGRES_PORT='5432,x' is not a port list"),
        ({"POSTGRES_WORKSPACE": "w" * 256}, "256 characters long"),
        ({"POSTGRES_WORKSPACE": "a\ud800"}, "lone surrogate"),
    ],
)
def test_a_message_names_what_was_actually_set(env, message):
    with pytest.raises(ConfigError) as info:
        PostgresSettings.from_env(env, dotenv_path=NO_DOTENV)
    assert message in str(info.value)
    assert "POSTGRES_PORT" not in str(info.value) or "POSTGRES_PORT" in env


def test_a_multi_host_dsn_connects_to_the_host_that_answers(base_settings):
    """libpq tries the hosts in turn: the first port has no server, the second has ours."""
    good = base_settings
    dsn = (
        f"postgresql://{good.user}@127.0.0.1:1,{good.host}:{good.port}/{good.database}"
        f"?connect_timeout=5"
    )
    settings = PostgresSettings.from_env(
        {"POSTGRES_DSN": dsn, "POSTGRES_PASSWORD": good.password}, dotenv_path=NO_DOTENV
    )
    assert settings.ports == f"1,{good.port}" and f":1,{good.port}/" in settings.describe()
    PostgreSQLSyncConnectionManager.initialize(settings)
    try:
        row = PostgreSQLSyncConnectionManager.execute_query(
            "SELECT inet_server_port() AS port", fetch_one=True
        )
        assert row["port"] == good.port
    finally:
        PostgreSQLSyncConnectionManager.close()
    assert PostgresSettings.from_env(settings.to_env(), dotenv_path=NO_DOTENV).ports == (
        settings.ports
    )


def test_three_parts_each_read_flat_too():
    s = PostgresSettings(host="db", max_connections=9, schema="rag", hnsw_m=24)
    assert (s.connection.host, s.pool.max_connections, s.storage.schema) == ("db", 9, "rag")
    assert (s.host, s.max_connections, s.schema, s.hnsw_m) == ("db", 9, "rag", 24)
    assert s.replace(schema="other").storage.schema == "other"
    assert s.replace(storage=s.storage).storage == s.storage
    with pytest.raises(TypeError, match="hnsw_mm"):
        PostgresSettings(hnsw_mm=24)
    with pytest.raises(AttributeError, match="hnsw_mm"):
        _ = s.hnsw_mm
    with pytest.raises(ConfigError, match="POSTGRES_MIN_CONNECTIONS"):
        s.replace(min_connections=10)  # each part is checked whole after a change


@pytest.mark.parametrize(
    ("change", "reopens"),
    [
        ({"hnsw_m": 32, "schema": "elsewhere", "vector_index_type": "IVFFLAT"}, False),
        ({"workspace": "team_b"}, False),
        ({"max_connections": 3}, True),
        ({"max_lifetime": 60.0}, True),
        ({"application_name": "renamed"}, True),
        ({"statement_timeout": 5000}, True),
    ],
)
def test_only_connection_or_pool_changes_reopen_the_pool(base_settings, change, reopens):
    Manager = PostgreSQLSyncConnectionManager
    first = Manager.initialize(base_settings)
    try:
        with Manager.get_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        changed = base_settings.replace(**change)
        second = Manager.initialize(changed)
        assert (second is not first) == reopens
        assert first.closed == reopens
        assert Manager.settings() == changed  # what stores built from now on read
        if not reopens:
            with Manager.get_connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                assert cur.fetchone()[0] == backend  # the same server session
    finally:
        Manager.close()
