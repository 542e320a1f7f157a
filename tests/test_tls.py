"""TLS as managed PostgreSQL requires it: a real PgBouncer terminates TLS with a
certificate made for the test (the embedded PostgreSQL build has no SSL), and every
wrong setting fails with the variable to change named."""

from __future__ import annotations

import pytest

from aperag_pg.doctor import run_checks
from aperag_pg.errors import DatabaseUnavailable
from aperag_pg.manager import PostgreSQLSyncConnectionManager as Manager
from aperag_pg.stores.kv import KVStore
from devtools.pgbouncer import EmbeddedPgBouncer, make_tls_files

from .lightrag_support import new_workspace


@pytest.fixture(scope="module")
def tls(tmp_root):
    """The CA, and a server certificate that lists 127.0.0.1 only (not "localhost")."""
    return make_tls_files(tmp_root / "tls", dns_names=(), ip_addresses=("127.0.0.1",))


@pytest.fixture(scope="module")
def tls_bouncer(pg_server, tmp_root, tls):
    admin = pg_server.admin
    bouncer = EmbeddedPgBouncer(
        tmp_root / "pgbouncer-tls", admin, users={admin.user: admin.password}, tls=tls
    ).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def verify_full(tls_bouncer, tls, base_settings):
    return tls_bouncer.route(base_settings, ssl_mode="verify-full", ssl_root_cert=str(tls.ca_cert))


def _connect_error(settings) -> str:
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            Manager.initialize(settings.replace(min_connections=1))
    finally:
        Manager.close()
    return str(info.value)


def test_verify_full_with_the_right_ca_works(verify_full):
    Manager.initialize(verify_full)
    try:
        with Manager.get_connection() as conn:
            assert conn.info.ssl_in_use
            assert conn.info.ssl_attribute("protocol").startswith("TLSv1.")
        store = KVStore("full_docs", workspace=new_workspace("tls"))
        store.ensure_tables()
        store.upsert({"doc": {"content": "over TLS"}})
        assert store.get_by_id("doc")["content"] == "over TLS"
    finally:
        Manager.close()


def test_a_wrong_ca_names_the_root_cert_variable(verify_full, tmp_root):
    other_ca = make_tls_files(tmp_root / "other-ca", ca_name="another CA").ca_cert
    message = _connect_error(verify_full.replace(ssl_root_cert=str(other_ca)))
    assert "certificate verify failed" in message
    assert f"POSTGRES_SSL_ROOT_CERT={other_ca}" in message
    assert "POSTGRES_PASSWORD" not in message


def test_a_host_name_the_certificate_does_not_list_names_the_host_variable(verify_full):
    message = _connect_error(verify_full.replace(host="localhost"))
    assert "does not match host name" in message
    assert "POSTGRES_HOST='localhost'" in message and "verify-ca" in message
    assert "POSTGRES_PASSWORD" not in message


def test_verify_ca_accepts_the_certificate_whatever_the_name(verify_full):
    Manager.initialize(verify_full.replace(host="localhost", ssl_mode="verify-ca"))
    try:
        with Manager.get_connection() as conn:
            assert conn.info.ssl_in_use
    finally:
        Manager.close()


def test_a_missing_root_cert_file_names_the_variable(verify_full, tmp_root):
    missing = tmp_root / "no-such-ca.crt"
    message = _connect_error(verify_full.replace(ssl_root_cert=str(missing)))
    assert "POSTGRES_SSL_ROOT_CERT" in message and str(missing) in message


def test_require_against_a_server_without_tls_names_the_mode_variable(base_settings):
    message = _connect_error(base_settings.replace(ssl_mode="require"))
    assert "POSTGRES_SSL_MODE=require" in message and "does not offer" in message


def test_doctor_reports_whether_the_connection_is_encrypted(verify_full, base_settings):
    encrypted = next(f for f in run_checks(verify_full) if f.check == "encryption")
    assert encrypted.verdict == "OK"
    assert "TLS (TLSv1." in encrypted.detail and "server verified (verify-full)" in encrypted.detail
    unchecked = next(
        f for f in run_checks(verify_full.replace(ssl_mode="require")) if f.check == "encryption"
    )
    assert unchecked.verdict == "WARN" and "not checked" in unchecked.detail
    plain = next(f for f in run_checks(base_settings) if f.check == "encryption")
    assert plain.verdict == "OK" and plain.detail.startswith("not encrypted")


def test_a_ca_of_the_same_name_but_another_key_names_the_root_cert_variable(verify_full, tmp_root):
    impostor = make_tls_files(tmp_root / "impostor-ca").ca_cert  # same CA name, new key
    message = _connect_error(verify_full.replace(ssl_root_cert=str(impostor)))
    assert "POSTGRES_SSL_ROOT_CERT" in message and "POSTGRES_PASSWORD" not in message
