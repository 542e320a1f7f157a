"""docker-compose.yml and the Dockerfile, checked for what a deployment silently relies on.

Three things break a `docker compose up` without an error at build time, so they are
checked here as data (PyYAML, no Docker engine):

- credentials: the worker logs in with the role and database the postgres service
  creates, and no real secret is committed;
- the connection budget: the default deployment's pools fit in the server's
  max_connections (every worker process holds its own pool);
- variables: every variable the containers and the image set is one something reads
  (``aperag_pg.environment.known_variables()`` or Celery's command line), and the worker's
  environment makes valid ``PostgresSettings``.

Pinned images, healthchecks and the like are left to the files themselves.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from aperag_pg.environment import known_variables
from aperag_pg.settings import PostgresSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# Read by Celery's own command line, not by aperag_pg: `celery` runs with
# auto_envvar_prefix="CELERY", so CELERY_WORKER_CONCURRENCY is `celery worker --concurrency`.
CELERY_CLI_VARIABLES = {"CELERY_WORKER_CONCURRENCY"}
# Interpreter and pip settings the Dockerfile may set besides the application's variables.
PYTHON_RUNTIME_VARIABLES = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}

# The only defaults a password or key may have in a file everyone can read (or none, or "").
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "change_me"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY")

# Connections the server keeps apart from the workers: superuser_reserved_connections (3 by
# default) plus room for psql, `python -m aperag_pg stats`, monitoring and migrations.
SERVER_RESERVED_CONNECTIONS = 3 + 10
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100

# ${NAME} or ${NAME:-default}: the only interpolation the compose file uses. Any other `$`
# form makes with_defaults() fail, so the tests never silently misread a value.
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}$]*))?\}")


def with_defaults(value: Any) -> str:
    """``value`` as deployed with nothing set in the shell or .env: references -> defaults."""
    text = _REFERENCE.sub(lambda m: m["default"] or "", str(value))
    if "$" in text:
        raise ValueError(f"interpolation these tests do not read: {value!r}")
    return text


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment``, raw (references not resolved)."""
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write `environment:` as a mapping, NAME: value"
    return {name: "" if value is None else str(value) for name, value in env.items()}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's image: aperag_pg reads their environment."""
    services = compose["services"]
    built = {s.get("image") for s in services.values() if "build" in s} - {None}
    return {name: s for name, s in services.items() if "build" in s or s.get("image") in built}


def dockerfile_env() -> dict[str, str]:
    """NAME -> value for every ENV instruction (continuation lines joined)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    values = {}
    for line in text.splitlines():
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "ENV":
            for word in shlex.split(args):
                name, sep, value = word.partition("=")
                assert sep, f"`ENV {args}`: write ENV NAME=value"
                values[name] = value
    return values


def connections_needed(services: dict[str, Any]) -> tuple[int, str]:
    """Connections the default deployment's pools may open, and how that adds up."""
    needed, parts = 0, []
    for name, service in app_services({"services": services}).items():
        env = {k: with_defaults(v) for k, v in environment(service).items()}
        if "POSTGRES_HOST" not in env:  # beat only sends tasks: it opens no pool
            continue
        # Without a concurrency Celery starts one process per host CPU, each with a pool.
        concurrency = env.get("CELERY_WORKER_CONCURRENCY") or dockerfile_env().get(
            "CELERY_WORKER_CONCURRENCY"
        )
        assert concurrency, f"{name}: no CELERY_WORKER_CONCURRENCY, so the count is the host's"
        if "webui" in (service.get("command") or []):  # one server process, no Celery
            concurrency = "1"
        per_process = PostgresSettings.from_env(env, dotenv_path=os.devnull).max_connections
        replicas = int(with_defaults((service.get("deploy") or {}).get("replicas", 1)))
        needed += replicas * int(concurrency) * per_process
        parts.append(f"{name}: {replicas} x {concurrency} processes x {per_process}")
    return needed, "; ".join(parts)


def server_max_connections(postgres: dict[str, Any]) -> int:
    found = re.search(r"max_connections=(\d+)", with_defaults(postgres.get("command") or ""))
    return int(found[1]) if found else POSTGRES_DEFAULT_MAX_CONNECTIONS


@pytest.fixture
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


# -- credentials --------------------------------------------------------------------------


def test_worker_and_postgres_agree_on_credentials(compose):
    # Compared raw: the same ${NAME:-default} on both sides agrees with and without a .env.
    server = environment(compose["services"]["postgres"])
    server = tuple(server.get(n) for n in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
    assert None not in server, f"the postgres service does not set its role: {server}"
    worker = environment(compose["services"]["worker"])
    client = (
        worker.get("POSTGRES_USER"),
        worker.get("POSTGRES_PASSWORD"),
        worker.get("POSTGRES_DATABASE") or worker.get("POSTGRES_DB"),
    )
    assert client == server, f"worker logs in with {client}, the server creates {server}"


def test_no_real_secret_is_committed(compose):
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value:
                reference = _REFERENCE.fullmatch(value)
                if reference is None:
                    problems.append(f"{name}.{key} is written into the file; use ${{{key}}}")
                elif (reference["default"] or "") not in PLACEHOLDER_SECRETS:
                    problems.append(f"{name}.{key} defaults to {reference['default']!r}")
            if re.search(r"://[^/@\s:]*:[^/@\s]+@", value):
                problems.append(f"{name}.{key} has a password inside a URL")
    problems += [f"Dockerfile ENV {k}" for k in dockerfile_env() if SECRET_NAME.search(k)]
    assert not problems, f"secrets committed: {problems}"


# -- the connection budget ----------------------------------------------------------------


def test_default_deployment_fits_the_connection_budget(compose):
    needed, how = connections_needed(compose["services"])
    assert needed, "no service opens a pool: is POSTGRES_HOST missing from the worker?"
    server_max = server_max_connections(compose["services"]["postgres"])
    assert needed <= server_max - SERVER_RESERVED_CONNECTIONS, (
        f"{how} = {needed} connections, more than max_connections={server_max} minus "
        f"{SERVER_RESERVED_CONNECTIONS} reserved"
    )


def test_pgbouncer_override_in_the_docs_fits_the_compose_file(compose):
    text = (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "pgbouncer:" in b]
    assert blocks, "docs/DEPLOYMENT.md has no PgBouncer compose snippet"
    snippet = yaml.safe_load(blocks[0])["services"]
    bouncer = environment(snippet["pgbouncer"])
    server = environment(compose["services"]["postgres"])
    assert (bouncer["DB_USER"], bouncer["DB_PASSWORD"], bouncer["DB_NAME"]) == (
        server["POSTGRES_USER"],
        server["POSTGRES_PASSWORD"],
        server["POSTGRES_DB"],
    ), "PgBouncer logs in with other credentials than the postgres service creates"
    override = environment(snippet["worker"])
    unknown = sorted(set(override) - known_variables() - CELERY_CLI_VARIABLES)
    assert not unknown, f"the snippet sets worker variables nothing reads: {unknown}"
    # Both sides of the budget the docs describe: PgBouncer's server pool in max_connections,
    # every worker pool in MAX_CLIENT_CONN.
    server_pool = int(bouncer["DEFAULT_POOL_SIZE"]) + int(bouncer.get("RESERVE_POOL_SIZE", 0))
    server_max = server_max_connections(compose["services"]["postgres"])
    assert server_pool <= server_max - SERVER_RESERVED_CONNECTIONS, (server_pool, server_max)
    worker = compose["services"]["worker"]
    merged = {**worker, "environment": {**environment(worker), **override}}
    needed, how = connections_needed({**compose["services"], "worker": merged})
    assert needed <= int(bouncer["MAX_CLIENT_CONN"]), f"{how} = {needed} > MAX_CLIENT_CONN"


# -- variables ----------------------------------------------------------------------------


def test_app_containers_get_only_variables_the_package_reads(compose):
    assert "worker" in app_services(compose), "the worker does not run this repository's image"
    allowed = known_variables() | CELERY_CLI_VARIABLES
    unknown = {
        name: sorted(set(environment(service)) - allowed)
        for name, service in app_services(compose).items()
    }
    unknown = {name: names for name, names in unknown.items() if names}
    assert not unknown, (
        f"variables that nothing reads: {unknown}. Remove them, or add the ones aperag_pg "
        "reads to aperag_pg/environment.py (known_variables)."
    )


def test_image_sets_only_known_variables():
    allowed = known_variables() | CELERY_CLI_VARIABLES | PYTHON_RUNTIME_VARIABLES
    unknown = sorted(set(dockerfile_env()) - allowed)
    assert not unknown, f"the Dockerfile sets variables that nothing reads: {unknown}"


def test_celery_cli_variables_are_real_options():
    # The allowlist above is only honest if Celery's CLI really reads these names.
    from celery.bin import celery as celery_cli

    source = inspect.getsource(celery_cli.main)
    assert re.search(r"auto_envvar_prefix\s*=\s*['\"]CELERY['\"]", source)
    group = celery_cli.celery
    ctx = click.Context(group, info_name="celery")
    options = {
        f"CELERY_{name.upper()}_{param.name.upper()}"
        for name in group.list_commands(ctx)
        for param in group.get_command(ctx, name).params
        if isinstance(param, click.Option)
    }
    unknown = sorted(CELERY_CLI_VARIABLES - options)
    assert not unknown, f"no Celery command-line option is read from {unknown}"


def test_worker_environment_is_valid_settings(compose):
    env = {k: with_defaults(v) for k, v in environment(compose["services"]["worker"]).items()}
    settings = PostgresSettings.from_env(env, dotenv_path=os.devnull)
    # Inside the compose network: the postgres service, never a .env's local address.
    assert (settings.host, settings.port) == ("postgres", 5432), (
        f"the worker connects to {settings.host}:{settings.port}, not the postgres service"
    )


# -- the WebUI ------------------------------------------------------------------------------


def test_the_webui_service_needs_lightrag_authentication(compose):
    from aperag_pg.errors import ConfigError
    from aperag_pg.lightrag.server import WebUISettings

    webui = compose["services"]["webui"]
    env = {k: with_defaults(v) for k, v in environment(webui).items()}
    with pytest.raises(ConfigError, match="AUTH_ACCOUNTS"):  # as deployed with nothing set
        WebUISettings.from_env(env)
    assert WebUISettings.from_env({**env, "LIGHTRAG_API_KEY": "k"}).host == "0.0.0.0"
    assert all(with_defaults(p).startswith("127.0.0.1:") for p in webui["ports"])
    assert {"lightrag", "langgraph", "webui"} <= set(webui["build"]["args"]["EXTRAS"].split(","))
