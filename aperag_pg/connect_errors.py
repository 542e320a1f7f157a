"""Why a new connection failed, told as the variable to change: one message for the pool,
``doctor`` and ``stats``.

libpq's own text stays in the message (it names the file, the host or the role), and the
fix names the ``POSTGRES_*`` variable that causes it. TLS problems get their own fixes:
"certificate verify failed" followed by advice about the password would send a user to
the wrong place.
"""

from __future__ import annotations

import psycopg2

from .errors import DatabaseUnavailable, first_line
from .settings import ConnectionSettings

_DEFAULT_ROOT_CERT = "~/.postgresql/root.crt"
# OpenSSL's words for a server certificate no CA in the root file vouches for (a CA of
# the same name but another key gives the signature failure).
_UNTRUSTED_CERTIFICATE = (
    "certificate verify failed",
    "self-signed certificate",
    "self signed certificate",
    "signature failure",
    "unable to get local issuer certificate",
)


def cannot_connect(
    settings: ConnectionSettings, exc: psycopg2.OperationalError
) -> DatabaseUnavailable:
    """The package's error for a failed connect: what libpq said, and what to change."""
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {settings.describe()}: {first_line(exc)}. "
        f"{fix_for(settings, str(exc))}"
    )


def fix_for(settings: ConnectionSettings, message: str) -> str:
    """The fix for libpq's ``message``, naming the variable to change."""
    text = message.lower()
    mode = settings.ssl_mode
    root = settings.ssl_root_cert or f"{_DEFAULT_ROOT_CERT} (the default)"
    if "does not match host name" in text:
        return (
            f"Fix: the server's TLS certificate does not list POSTGRES_HOST={settings.host!r}. "
            "Set POSTGRES_HOST to a name the certificate lists, or POSTGRES_SSL_MODE=verify-ca "
            "to check who signed it but not the name."
        )
    if "root certificate file" in text or ("root.crt" in text and "does not exist" in text):
        return (
            f"Fix: POSTGRES_SSL_MODE={mode} verifies the server, so it needs the CA "
            f"certificate: set POSTGRES_SSL_ROOT_CERT to that file (now {root})."
        )
    if any(sign in text for sign in _UNTRUSTED_CERTIFICATE):
        return (
            f"Fix: the server's TLS certificate is not signed by a CA in "
            f"POSTGRES_SSL_ROOT_CERT={root}. Set POSTGRES_SSL_ROOT_CERT to the CA certificate "
            "that signed it (your provider's CA bundle), or POSTGRES_SSL_MODE=require to "
            "encrypt without verifying the server."
        )
    if "server does not support ssl" in text:
        return (
            f"Fix: POSTGRES_SSL_MODE={mode} requires TLS, which this server does not offer: "
            "enable ssl on the server, or set POSTGRES_SSL_MODE=prefer."
        )
    if "private key" in text or "client certificate" in text or "certificate file" in text:
        return (
            "Fix: check POSTGRES_SSL_CERT and POSTGRES_SSL_KEY (the client certificate and "
            "its key, the key readable by this user only)."
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"Fix: check POSTGRES_USER={settings.user!r} and POSTGRES_PASSWORD (or the "
            "password in POSTGRES_DSN)."
        )
    return (
        "Check that the server is running and reachable and that POSTGRES_HOST, POSTGRES_PORT, "
        "POSTGRES_USER and POSTGRES_PASSWORD are right (or POSTGRES_DSN); the next call will "
        "try again."
    )
