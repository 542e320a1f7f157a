"""PostgresSettings: the environment (and an optional .env) as one validated, frozen object.

Precedence, highest first: a ``POSTGRES_*`` variable, then the matching part of
``POSTGRES_DSN`` / ``DATABASE_URL``, then the default. The real environment wins
over ``.env``. Every bad value raises ``ConfigError`` naming the variable, the
value and what is allowed; a password is never part of any message or repr.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
from dotenv import dotenv_values, find_dotenv

from .errors import ConfigError
from .values import unstorable

MAX_WORKSPACE_LENGTH = 255  # LightRAG's workspace columns are varchar(255)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VECTOR_INDEX_TYPES = ("HNSW", "IVFFLAT", "NONE")

# Schema names become identifiers in DDL; we quote them anyway, but a name that
# needs quoting is almost always a mistake, so refuse it with a clear message.
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# DSN keys that map onto a field; any other libpq keyword in a DSN is passed through.
_DSN_FIELDS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "sslmode": "ssl_mode",
    "sslcert": "ssl_cert",
    "sslkey": "ssl_key",
    "sslrootcert": "ssl_root_cert",
    "sslcrl": "ssl_crl",
    "connect_timeout": "connect_timeout",
    "application_name": "application_name",
}


def _meta(env: str, **extra: Any) -> dict[str, Any]:
    return {"env": env, **extra}


@dataclass(frozen=True)
class _Checked:
    """Range checks of the fields' ``lo``/``hi`` metadata, then the group's own checks."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_range(f, getattr(self, f.name), None)
        self._check()

    def _check(self) -> None:
        pass


@dataclass(frozen=True)
class ConnectionSettings(_Checked):
    """What to connect to, and how: a change opens new connections (a new pool)."""

    host: str = field(default="localhost", metadata=_meta("POSTGRES_HOST"))
    port: int = field(default=5432, metadata=_meta("POSTGRES_PORT", lo=1, hi=65535))
    user: str = field(default="postgres", metadata=_meta("POSTGRES_USER"))
    password: str = field(default="", repr=False, metadata=_meta("POSTGRES_PASSWORD"))
    database: str = field(default="postgres", metadata=_meta("POSTGRES_DATABASE"))
    connect_timeout: int = field(
        default=10, metadata=_meta("POSTGRES_CONNECT_TIMEOUT", lo=1, hi=3600)
    )
    statement_timeout: int = field(
        default=0, metadata=_meta("POSTGRES_STATEMENT_TIMEOUT", lo=0, hi=2_147_483_647)
    )
    ssl_mode: str = field(default="prefer", metadata=_meta("POSTGRES_SSL_MODE"))
    ssl_cert: str | None = field(default=None, metadata=_meta("POSTGRES_SSL_CERT"))
    ssl_key: str | None = field(default=None, metadata=_meta("POSTGRES_SSL_KEY"))
    ssl_root_cert: str | None = field(default=None, metadata=_meta("POSTGRES_SSL_ROOT_CERT"))
    ssl_crl: str | None = field(default=None, metadata=_meta("POSTGRES_SSL_CRL"))
    application_name: str = field(default="aperag_pg", metadata=_meta("POSTGRES_APPLICATION_NAME"))
    # A multi-host connection's ports, one per host ("5432,5433"); None: just ``port``.
    ports: str | None = None
    # Other libpq keywords found in POSTGRES_DSN (e.g. target_session_attrs), passed through.
    dsn_options: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def _check(self) -> None:
        if self.ssl_mode not in SSL_MODES:
            raise ConfigError(
                f"POSTGRES_SSL_MODE={self.ssl_mode!r} is not a libpq sslmode: "
                f"allowed are {', '.join(SSL_MODES)}."
            )
        if not self.database.strip():
            raise ConfigError(
                "POSTGRES_DATABASE is empty: set it (or POSTGRES_DB) to the database name."
            )
        if not self.host.strip():
            raise ConfigError(
                "POSTGRES_HOST is empty: set it to the server's host name or address."
            )

    def connect_kwargs(self, application_name: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``; psycopg2 quotes every value itself."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.ports or self.port,
            "user": self.user,
            "dbname": self.database,
            "connect_timeout": self.connect_timeout,
            "sslmode": self.ssl_mode,
            "application_name": application_name or self.application_name,
        }
        if self.password:
            kwargs["password"] = self.password
        for key, value in (
            ("sslcert", self.ssl_cert),
            ("sslkey", self.ssl_key),
            ("sslrootcert", self.ssl_root_cert),
            ("sslcrl", self.ssl_crl),
        ):
            if value:
                kwargs[key] = value
        kwargs.update(dict(self.dsn_options))
        if self.statement_timeout:
            # After the DSN's own options (e.g. -c work_mem=8MB), which are kept: the last
            # -c of a setting wins, and POSTGRES_STATEMENT_TIMEOUT wins over the DSN.
            timeout = f"-c statement_timeout={self.statement_timeout}"
            kwargs["options"] = " ".join(filter(None, (kwargs.get("options"), timeout)))
        return kwargs

    def dsn(self) -> str:
        """A libpq connection string, password included; never log it (see :meth:`redacted_dsn`)."""
        return psycopg2.extensions.make_dsn(**self.connect_kwargs())

    def redacted_dsn(self) -> str:
        """The connection string with every secret replaced (password, sslpassword, any
        libpq keyword naming a password), safe for logs and messages."""
        kwargs = {
            key: "***" if "password" in key.lower() else value
            for key, value in self.connect_kwargs().items()
        }
        return psycopg2.extensions.make_dsn(**kwargs)

    def to_env(self) -> dict[str, str]:
        """The POSTGRES_* variables naming this server and database, e.g. for a subprocess
        (a Celery worker) that should use the same settings' connection."""
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": self.ports or str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DATABASE": self.database,
        }

    def pool_application_name(self, pid: int) -> str:
        """The application_name of a pool's connections in process ``pid``."""
        return f"{self.application_name[:40]}:{pid}"

    def pool_application_pattern(self) -> str:
        """A PostgreSQL regular expression matching every pool connection's
        application_name (``pg_stat_activity``), whatever the process."""
        return "^" + re.sub(r"([^A-Za-z0-9_ ])", r"\\\1", self.application_name[:40]) + ":[0-9]+$"

    def describe(self) -> str:
        """``user@host:port/database``, for messages."""
        return f"{self.user}@{self.host}:{self.ports or self.port}/{self.database}"


@dataclass(frozen=True)
class PoolSettings(_Checked):
    """How many connections, for how long: a change opens a new pool."""

    min_connections: int = field(
        default=1, metadata=_meta("POSTGRES_MIN_CONNECTIONS", lo=0, hi=1000)
    )
    max_connections: int = field(
        default=5, metadata=_meta("POSTGRES_MAX_CONNECTIONS", lo=1, hi=1000)
    )
    pool_timeout: float = field(
        default=30.0, metadata=_meta("POSTGRES_POOL_TIMEOUT", lo=0.001, hi=3600)
    )
    max_lifetime: float = field(
        default=3600.0, metadata=_meta("POSTGRES_MAX_LIFETIME", lo=1, hi=10**7)
    )
    max_idle: float = field(default=600.0, metadata=_meta("POSTGRES_MAX_IDLE", lo=1, hi=10**7))
    # RESET ALL on every return, for session settings the server does not report (a plain
    # SET statement_timeout, SET ROLE): one round trip per checkout. Off by default.
    reset_on_return: bool = field(default=False, metadata=_meta("POSTGRES_RESET_ON_RETURN"))

    def _check(self) -> None:
        if self.min_connections > self.max_connections:
            raise ConfigError(
                f"POSTGRES_MIN_CONNECTIONS={self.min_connections} is greater than "
                f"POSTGRES_MAX_CONNECTIONS={self.max_connections}: "
                "set the minimum at or below the maximum."
            )


@dataclass(frozen=True)
class StorageSettings(_Checked):
    """Where and how the stores keep data: read by stores when built; a change keeps the
    pool open."""

    workspace: str | None = field(default=None, metadata=_meta("POSTGRES_WORKSPACE"))
    schema: str = field(default="public", metadata=_meta("POSTGRES_SCHEMA"))
    # pgvector index of the vector tables (same variables and defaults as LightRAG's).
    vector_index_type: str = field(default="HNSW", metadata=_meta("POSTGRES_VECTOR_INDEX_TYPE"))
    hnsw_m: int = field(default=16, metadata=_meta("POSTGRES_HNSW_M", lo=2, hi=100))
    hnsw_ef: int = field(default=64, metadata=_meta("POSTGRES_HNSW_EF", lo=4, hi=1000))
    # hnsw.ef_search per query (SET LOCAL); 0: pgvector's 40, raised to top_k when larger.
    hnsw_ef_search: int = field(default=0, metadata=_meta("POSTGRES_HNSW_EF_SEARCH", lo=0, hi=1000))
    ivfflat_lists: int = field(
        default=100, metadata=_meta("POSTGRES_IVFFLAT_LISTS", lo=1, hi=32768)
    )

    def _check(self) -> None:
        if self.vector_index_type not in VECTOR_INDEX_TYPES:
            raise ConfigError(
                f"POSTGRES_VECTOR_INDEX_TYPE={self.vector_index_type!r} is not supported: "
                f"allowed are {', '.join(VECTOR_INDEX_TYPES)}."
            )
        if not is_plain_schema_name(self.schema):
            raise ConfigError(
                f"POSTGRES_SCHEMA={self.schema!r} is not a plain schema name: use 1 to 63 "
                "letters, digits or underscores, not starting with a digit."
            )
        if self.workspace is None:
            return
        if not self.workspace.strip():
            raise ConfigError("POSTGRES_WORKSPACE is set but empty: unset it or give it a name.")
        problem = unstorable(self.workspace)
        if problem or len(self.workspace) > MAX_WORKSPACE_LENGTH:
            raise ConfigError(
                f"POSTGRES_WORKSPACE={self.workspace[:40]!r}... is not a workspace name: "
                + (
                    f"it contains {problem}."
                    if problem
                    else f"it is {len(self.workspace)} characters long and LightRAG's "
                    f"workspace column holds at most {MAX_WORKSPACE_LENGTH}."
                )
            )


GROUPS: dict[str, type[_Checked]] = {
    "connection": ConnectionSettings,
    "pool": PoolSettings,
    "storage": StorageSettings,
}
# Every field, and ConnectionSettings' methods, read flat from PostgresSettings.
_GROUP_OF = {f.name: name for name, group in GROUPS.items() for f in dataclasses.fields(group)}
_GROUP_OF.update(
    dict.fromkeys(
        (
            "connect_kwargs",
            "dsn",
            "redacted_dsn",
            "to_env",
            "pool_application_name",
            "pool_application_pattern",
            "describe",
        ),
        "connection",
    )
)


@dataclass(frozen=True, init=False)
class PostgresSettings:
    """All of a process's settings, in three parts: ``connection`` (what to connect to),
    ``pool`` (how many connections, how long) and ``storage`` (schema, workspace, vector
    index). Only a change of the first two reopens the pool.

    Build it with :meth:`from_env`, or with flat keywords (``PostgresSettings(host="db",
    schema="rag")``); read fields flat too (``settings.schema``).
    """

    connection: ConnectionSettings
    pool: PoolSettings
    storage: StorageSettings

    def __init__(
        self,
        connection: ConnectionSettings | None = None,
        pool: PoolSettings | None = None,
        storage: StorageSettings | None = None,
        **fields: Any,
    ) -> None:
        parts: dict[str, Any] = {"connection": connection, "pool": pool, "storage": storage}
        changes: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for name, value in fields.items():
            group_name = _GROUP_OF.get(name)
            if group_name is None or callable(getattr(GROUPS[group_name], name, None)):
                raise TypeError(f"PostgresSettings has no setting {name!r}")
            changes[group_name][name] = value
        for name, group in GROUPS.items():
            part = parts[name] or group()
            if changes[name]:
                part = dataclasses.replace(part, **changes[name])
            object.__setattr__(self, name, part)

    def __getattr__(self, name: str) -> Any:
        group = _GROUP_OF.get(name)
        if group is None:
            raise AttributeError(f"PostgresSettings has no attribute {name!r}")
        return getattr(getattr(self, group), name)

    def reopens_pool(self, other: PostgresSettings) -> bool:
        """Whether a pool opened with these settings must be reopened for ``other``."""
        return self.connection != other.connection or self.pool != other.pool

    # -- loading ---------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | os.PathLike[str] | None = None,
    ) -> PostgresSettings:
        """Read ``environ`` (default ``os.environ``) over an optional ``.env`` file.

        ``dotenv_path`` defaults to the nearest ``.env`` from the working directory.
        """
        env = load_environment(environ, dotenv_path)
        names = {f.name: f for group in GROUPS.values() for f in dataclasses.fields(group)}
        raw: dict[str, Any] = {}
        label: dict[str, str] = {}  # field -> what set it, so a message names that
        dsn_var = next((v for v in ("POSTGRES_DSN", "DATABASE_URL") if _given(env, v)), None)
        if dsn_var:
            for name, (key, value) in _fields_from_dsn(env[dsn_var], dsn_var).items():
                raw[name] = value
                label[name] = f"{dsn_var} ({key})" if key else dsn_var
        if _given(env, "POSTGRES_DB") and not _given(env, "POSTGRES_DATABASE"):
            raw["database"], label["database"] = env["POSTGRES_DB"], "POSTGRES_DB"
        for f in names.values():
            var = f.metadata.get("env")
            if var and _given(env, var):  # an empty variable counts as unset, for every one
                raw[f.name], label[f.name] = env[var], var
        if "port" in raw and isinstance(raw["port"], str) and "," in raw["port"]:
            raw["port"], raw["ports"] = _port_list(raw["port"], label["port"])
        values = {k: _convert(names[k], v, label.get(k)) for k, v in raw.items()}
        for name, value in values.items():
            _check_range(names[name], value, label.get(name))
        return cls(**values)

    def replace(self, **changes: Any) -> PostgresSettings:
        """A copy with some fields (or whole parts) changed, validated again."""
        parts = {name: changes.pop(name, getattr(self, name)) for name in GROUPS}
        return PostgresSettings(**parts, **changes)


REDACTED = "***"
# A URL in free text: a scheme, "://", then up to whitespace or a quote; a trailing
# ".,;:)" is the sentence's, not the URL's.
# host, host:port, [v6]:port, with optional user info without "/" (an authority as parsed).
_HOST_PORT = re.compile(r"^([^@]*@)?(\[[^\]]*\]|[^:@\[\]]*)(:[0-9]*)?$")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)]")


def redact_url(url: str) -> str:
    """``url`` safe to print: the password of its user info (``user:***@``, or ``***@``
    for a user part alone, often a token), every query-string value and the fragment
    replaced. A value without a scheme (``user:pw@host``) is treated the same way."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{REDACTED}@{host}" if colon and user else f"{REDACTED}@{host}"
    tail, hash_mark, fragment = tail.partition("#")
    path, question_mark, query = tail.partition("?")
    if question_mark:
        query = "&".join(_redact_query_item(item) for item in query.split("&"))
    return (
        f"{scheme}{separator}{authority}{path}{question_mark}{query}"
        f"{hash_mark}{REDACTED if fragment else ''}"
    )


def redact_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group()), text)


def _authority_end(rest: str) -> int:
    """Where the authority of ``rest`` (a URL after ``scheme://``) ends: at the first "/",
    "?" or "#" (RFC 3986), as HTTP clients read it; but where that is no host[:port], as in
    ``user:pa/ss@host`` (a password with an unencoded "/"), after its last "@"."""
    query = min((i for i in map(rest.find, "?#") if i >= 0), default=len(rest))
    slash = rest.find("/", 0, query)
    end = query if slash < 0 else slash
    if _HOST_PORT.match(rest[:end]):
        return end
    slash = rest.find("/", rest.rfind("@", 0, query) + 1, query)
    return query if slash < 0 else slash


def _redact_query_item(item: str) -> str:
    name, equals, value = item.partition("=")
    if not equals:  # a bare item (``?TOKEN``) is a value too
        return REDACTED if item else item
    return f"{name}={REDACTED if value else ''}"


def is_plain_schema_name(name: str) -> bool:
    """1 to 63 letters, digits or underscores, not starting with a digit."""
    return bool(_SCHEMA_NAME.match(name))


def load_environment(
    environ: Mapping[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """The variables of ``.env`` overlaid by the real environment (which wins)."""
    path = dotenv_path if dotenv_path is not None else find_dotenv(usecwd=True)
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
    return {**from_file, **(os.environ if environ is None else environ)}


def _given(env: Mapping[str, str], var: str) -> bool:
    value = env.get(var)
    return value is not None and value.strip() != ""


def _port_list(text: str, label: str) -> tuple[int, str | None]:
    """(the first port, the list) of a multi-host connection's ports, e.g. "5432,5433"
    (an empty item is libpq's default port); ConfigError naming ``label``."""
    items = [item.strip() for item in text.split(",")]
    for item in items:
        if item and not (item.isdigit() and 1 <= int(item) <= 65535):
            raise ConfigError(
                f"{label}={text!r} is not a port list: give ports from 1 to 65535, one per "
                "host, separated by commas (e.g. 5432,5433)."
            )
    if not any(items):  # "h1,h2" without ports: libpq's default port for each
        return 5432, None
    return int(next(i for i in items if i)), ",".join(items)


def _check_range(f: dataclasses.Field, value: Any, label: str | None) -> None:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if (
        lo is not None
        and hi is not None
        and isinstance(value, (int, float))
        and not lo <= value <= hi
    ):
        raise ConfigError(
            f"{label or f.metadata['env']}={value!r} is out of range: allowed is {lo} to {hi}."
        )


def _fields_from_dsn(dsn: str, var: str) -> dict[str, tuple[str | None, Any]]:
    """field -> (the DSN keyword it came from, its value)."""
    try:
        parsed = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        # The driver's message quotes the string, which may hold a password.
        raise ConfigError(
            f"{var} is not a valid PostgreSQL URL or key=value connection string "
            "(value not shown, it may contain a password): "
            "use postgresql://user:password@host:port/database."
        ) from None
    values: dict[str, tuple[str | None, Any]] = {}
    extra = []
    for key, value in parsed.items():
        if key in _DSN_FIELDS:
            values[_DSN_FIELDS[key]] = (key, value)
        else:
            extra.append((key, value))
    values["dsn_options"] = (None, tuple(sorted(extra)))
    return values


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _convert(f: dataclasses.Field, raw: Any, label: str | None = None) -> Any:
    """Turn a string from the environment into the field's type, or raise ConfigError
    naming ``label`` (the variable, or the DSN and its keyword, that gave it)."""
    if not isinstance(raw, str):
        return raw
    var = label or f.metadata.get("env", f.name)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    text = raw.strip()
    shown = "<hidden>" if f.name == "password" else repr(raw)
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{var}={shown} is not a yes/no value: use true or false.")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(text)
            return value
    except ValueError:
        wanted = "a whole number" if kind == "int" else "a number"
        hi, lo = f.metadata.get("hi"), f.metadata.get("lo")
        bounds = f" between {lo} and {hi}" if lo is not None else ""
        raise ConfigError(f"{var}={shown} is not {wanted}: use {wanted}{bounds}.") from None
    if f.name == "ssl_mode":
        return text.lower()
    if f.name == "vector_index_type":
        return text.upper()
    if f.name in ("host", "user", "database", "schema", "application_name"):
        return text
    return raw
