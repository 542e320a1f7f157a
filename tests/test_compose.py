"""The deployment files (docker-compose.yml, Dockerfile, .dockerignore), checked as data.

No Docker engine is needed: the compose file is read with PyYAML, ``${VAR:-default}`` is
resolved the way Compose resolves it, and what the containers would get is compared with
what the package reads (``aperag_pg.environment.known_variables()``), LightRAG's storage
registry and Celery's command line.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from aperag_pg.environment import STORAGE_VARIABLES, celery_urls, known_variables
from aperag_pg.settings import PostgresSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# Variables read by Celery's own command line, not by aperag_pg: `celery` runs its click
# commands with auto_envvar_prefix="CELERY", so CELERY_<COMMAND>_<OPTION> sets that option
# (CELERY_WORKER_CONCURRENCY is `celery worker --concurrency`). Keep this list short; every
# entry is checked against Celery's CLI in test_celery_cli_allowlist_names_real_options.
CELERY_CLI_VARIABLES = {"CELERY_WORKER_CONCURRENCY"}

# The postgres service's variables belong to the pgvector (official postgres) image.
POSTGRES_IMAGE_VARIABLES = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "POSTGRES_INITDB_ARGS",
    "POSTGRES_HOST_AUTH_METHOD",
    "PGDATA",
}

# Interpreter and pip settings the Dockerfile may set besides the application's variables.
PYTHON_RUNTIME_VARIABLES = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PATH",
    "LANG",
}

# The only defaults a password or key may have in a file everyone can read (or none, or "").
PLACEHOLDER_PASSWORDS = {"change-me", "changeme", "change_me"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY")

# Connections the server keeps apart from the workers: superuser_reserved_connections (3 by
# default) plus room for psql, `python -m aperag_pg stats`, monitoring and migrations.
SERVER_RESERVED_CONNECTIONS = 3 + 10
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100

NO_DOTENV = os.devnull

# What a deployment sets in .env: every file must pass these through to both ends.
OVERRIDDEN_SHELL = {
    "POSTGRES_USER": "rag",
    "POSTGRES_PASSWORD": "from-the-shell",
    "POSTGRES_DATABASE": "r",
}


# -- Compose interpolation ----------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.S
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` with ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ... replaced, ``$$`` -> ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None or "$" in (braced["arg"] or ""):
            raise ValueError(f"interpolation this test does not support: {match[0]!r} in {value!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"]
        current = env.get(name)
        is_set = current is not None
        is_set_non_empty = bool(current)
        if op is None:
            return current or ""
        if op in (":-", "-"):
            return current if (is_set_non_empty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (is_set_non_empty if op == ":?" else is_set):
                raise ValueError(f"compose requires {name}: {arg}")
            return current
        return arg if (is_set_non_empty if op == ":+" else is_set) else ""

    return _REFERENCE.sub(replace, value)


def host_references(value: str) -> set[str]:
    """Names Compose would take from the host when it reads ``value`` (``$$`` excluded)."""
    names = set()
    for match in _REFERENCE.finditer(value):
        if match["named"]:
            names.add(match["named"])
        elif match["braced"] is not None:
            names.add(re.split(r"[:?+-]", match["braced"], maxsplit=1)[0])
    return names


def resolve(node: Any, env: dict[str, str]) -> Any:
    """The compose document as Compose sees it with ``env`` as the shell and .env."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    return node


def env_of(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` in either form (mapping or list of NAME=value)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) for item in environment)
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in environment.items()}


def healthcheck_command(service: dict[str, Any]) -> str:
    """The healthcheck's command as one string; empty when there is none or it is disabled."""
    check = service.get("healthcheck") or {}
    test = check.get("test")
    if check.get("disable") or not test:
        return ""
    if isinstance(test, list):
        if test[0] == "NONE":
            return ""
        return " ".join(str(t) for t in (test[1:] if test[0] in ("CMD", "CMD-SHELL") else test))
    return str(test)


def seconds(duration: Any) -> float:
    """A Compose duration (``90s``, ``2m``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(duration))
    if not parts or "".join(n + u for n, u in parts) != str(duration).strip():
        raise ValueError(f"not a Compose duration: {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> volume name, for the service's named-volume mounts (not bind mounts)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            kind = "volume"
        else:
            source, target = volume.get("source"), volume.get("target")
            kind = volume.get("type", "volume")
        if kind == "volume" and source and not source.startswith((".", "/", "~", "$")):
            mounts[target.rstrip("/")] = source
    return mounts


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's image (worker, beat, ...)."""
    services = compose["services"]
    images = {s.get("image") for s in services.values() if "build" in s} - {None}
    return {name: s for name, s in services.items() if "build" in s or s.get("image") in images}


def command_args(service: dict[str, Any]) -> list[str] | None:
    command = service.get("command")
    if command is None:
        return None
    return command.split() if isinstance(command, str) else [str(c) for c in command]


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """As deployed with nothing set in the shell or .env: every default in force."""
    return resolve(compose_raw, {})


@pytest.fixture(scope="module")
def worker_env(compose: dict[str, Any]) -> dict[str, str | None]:
    return env_of(compose["services"]["worker"])


# -- Dockerfile parsing -------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for args in dockerfile_args("ENV"):
        words = shlex.split(args)
        if words and "=" not in words[0]:  # legacy `ENV NAME value`
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            values[name] = value
    return values


def exec_form(args: str, keyword: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(
            f"{keyword} {args} is in shell form: use the JSON (exec) form so celery itself "
            "receives SIGTERM from `docker stop` and shuts down warmly."
        )
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def image_command() -> list[str]:
    entrypoint = dockerfile_args("ENTRYPOINT")
    cmd = dockerfile_args("CMD")
    assert cmd or entrypoint, "the Dockerfile has no CMD or ENTRYPOINT"
    parts = exec_form(entrypoint[-1], "ENTRYPOINT") if entrypoint else []
    return parts + (exec_form(cmd[-1], "CMD") if cmd else [])


def chowned_trees() -> list[str]:
    """Directories a RUN hands over, recursively, to a user (so they are writable by it)."""
    trees = []
    for args in dockerfile_args("RUN"):
        for match in re.finditer(r"chown\s+-R\s+\S+\s+(?P<paths>[^&;|]+)", args):
            trees.extend(p.rstrip("/") for p in match["paths"].split() if p.startswith("/"))
    return trees


def is_under(path: str, trees: list[str]) -> bool:
    return any(path == tree or path.startswith(tree + "/") for tree in trees)


# -- .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern decides, and
    a pattern that matches a parent directory matches everything below it."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


# -- the compose services -----------------------------------------------------------------


def test_postgres_redis_and_worker_services_exist(compose):
    missing = {"postgres", "redis", "worker"} - set(compose["services"])
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_postgres_is_pgvector_with_a_pinned_major_version(compose):
    image = compose["services"]["postgres"].get("image", "")
    match = re.fullmatch(r"pgvector/pgvector:(?:\d+\.\d+\.\d+-)?pg(?P<major>\d+)(?:-\w+)?", image)
    assert match, (
        f"postgres image {image!r}: use pgvector/pgvector with a tag naming the PostgreSQL "
        "major version (e.g. 0.8.1-pg17); a data volume only opens with the major it was made by"
    )


def test_redis_is_pinned_and_persists_its_queue(compose):
    redis = compose["services"]["redis"]
    image = redis.get("image", "")
    assert re.fullmatch(r"redis:\d+(?:\.\d+)*(?:-[\w.]+)?", image), (
        f"redis image {image!r}: pin a major version, e.g. redis:7-alpine"
    )
    args = command_args(redis) or []
    assert "--appendonly" in args and args[args.index("--appendonly") + 1] == "yes", (
        f"redis command {args}: run with --appendonly yes so queued tasks survive a restart"
    )


@pytest.mark.parametrize(
    ("service", "needles"),
    [
        ("postgres", ["pg_isready"]),
        ("redis", ["redis-cli", "ping"]),
        ("worker", ["config.celery", "inspect ping", "celery@$HOSTNAME"]),
    ],
)
def test_services_have_meaningful_healthchecks(compose, service, needles):
    command = healthcheck_command(compose["services"][service])
    missing = [n for n in needles if n not in command]
    assert not missing, f"{service} healthcheck {command!r} lacks {missing}"


def test_healthchecks_leave_container_variables_to_the_container(compose_raw):
    problems = []
    for name, service in compose_raw["services"].items():
        names = host_references(healthcheck_command(service))
        if names:
            problems.append(f"{name}: {sorted(names)}")
    assert not problems, (
        "Compose fills these healthcheck variables from the host when it reads the file, "
        f"not from the container: {problems}. Write $$NAME to reach the container's shell."
    )


def test_worker_waits_for_healthy_postgres_and_redis(compose):
    depends_on = compose["services"]["worker"].get("depends_on") or {}
    assert isinstance(depends_on, dict), "depends_on as a list cannot wait for health"
    for name in ("postgres", "redis"):
        condition = (depends_on.get(name) or {}).get("condition")
        assert condition == "service_healthy", (
            f"worker depends_on {name}: condition is {condition!r}, want service_healthy"
        )


def test_worker_has_time_for_a_warm_shutdown(compose):
    grace = compose["services"]["worker"].get("stop_grace_period")
    assert grace is not None, "worker has no stop_grace_period: Docker kills it after 10s"
    assert seconds(grace) >= 30, (
        f"worker stop_grace_period {grace!r}: give running tasks at least 30s to finish"
    )


def test_worker_can_be_scaled(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed container_name makes --scale worker=N fail"
    assert not worker.get("ports"), "published ports make --scale worker=N collide"


def test_named_volumes_are_declared_and_hold_the_data(compose):
    declared = set(compose.get("volumes") or {})
    undeclared = {
        f"{name}:{volume}"
        for name, service in compose["services"].items()
        for volume in named_volume_mounts(service).values()
        if volume not in declared
    }
    assert not undeclared, f"volumes used but not declared at the top level: {undeclared}"
    found = re.search(r"pg(\d+)", compose["services"]["postgres"].get("image", ""))
    major = int(found[1]) if found else 0
    # From PostgreSQL 18 on, the image keeps its data below /var/lib/postgresql/<major>.
    pg_data = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    assert pg_data in named_volume_mounts(compose["services"]["postgres"]), (
        f"postgres keeps no named volume at {pg_data}: the database dies with the container"
    )
    assert "/data" in named_volume_mounts(compose["services"]["redis"]), (
        "redis keeps no named volume at /data"
    )


# -- the variables the containers get -----------------------------------------------------


def test_app_containers_get_only_variables_the_package_reads(compose):
    allowed = known_variables() | CELERY_CLI_VARIABLES
    assert "worker" in app_services(compose), "the worker does not run this repository's image"
    unknown = {
        name: sorted(set(env_of(service)) - allowed)
        for name, service in app_services(compose).items()
    }
    unknown = {name: names for name, names in unknown.items() if names}
    assert not unknown, (
        f"variables that nothing reads: {unknown}. Remove them, or add the ones aperag_pg "
        "reads to aperag_pg/environment.py (known_variables)."
    )


def test_postgres_service_sets_only_the_images_variables(compose):
    extra = set(env_of(compose["services"]["postgres"])) - POSTGRES_IMAGE_VARIABLES
    assert not extra, f"postgres sets variables its image does not read: {sorted(extra)}"


def test_worker_reaches_postgres_and_redis_by_service_name(compose):
    problems = []
    for name, service in app_services(compose).items():
        env = {k: v for k, v in env_of(service).items() if v is not None}
        if any(k.startswith("POSTGRES_") for k in env):
            if env.get("POSTGRES_HOST") != "postgres":
                problems.append(f"{name}: POSTGRES_HOST={env.get('POSTGRES_HOST')!r}")
            if env.get("POSTGRES_PORT", "5432") != "5432":
                problems.append(f"{name}: POSTGRES_PORT={env.get('POSTGRES_PORT')!r}")
        for url in celery_urls(env):
            parts = urlsplit(url)
            if parts.scheme not in ("redis", "rediss") or parts.hostname != "redis":
                problems.append(f"{name}: broker/backend {url!r} is not the redis service")
    assert not problems, problems
    assert "POSTGRES_HOST" in env_of(compose["services"]["worker"]), "worker sets no POSTGRES_HOST"


def test_worker_environment_is_valid_settings(worker_env):
    settings = PostgresSettings.from_env(
        {k: v for k, v in worker_env.items() if v is not None}, dotenv_path=NO_DOTENV
    )
    assert (settings.host, settings.port) == ("postgres", 5432)


@pytest.mark.parametrize(
    "shell",
    [{}, OVERRIDDEN_SHELL],
    ids=["defaults", "overridden"],
)
def test_worker_and_postgres_agree_on_credentials(compose_raw, shell):
    services = resolve(compose_raw, shell)["services"]
    image = env_of(services["postgres"])
    server = (image.get("POSTGRES_USER"), image.get("POSTGRES_PASSWORD"), image.get("POSTGRES_DB"))
    worker = env_of(services["worker"])
    client = (
        worker.get("POSTGRES_USER"),
        worker.get("POSTGRES_PASSWORD"),
        worker.get("POSTGRES_DATABASE") or worker.get("POSTGRES_DB"),
    )
    assert client == server, f"worker connects as {client[0]!r}/{client[2]!r}, server has {server}"
    if shell:
        assert client[1] == shell["POSTGRES_PASSWORD"], (
            "POSTGRES_PASSWORD from the shell or .env does not reach the containers"
        )


def test_no_real_secret_in_the_compose_file(compose_raw):
    problems = []
    for name, service in compose_raw["services"].items():
        for key, raw in env_of(service).items():
            value = raw or ""
            if SECRET_NAME.search(key):
                match = re.fullmatch(r"\$\{(\w+)(?::?-(?P<default>[^}]*)|:?\?[^}]*)?\}", value)
                if match is None:
                    problems.append(f"{name}.{key} is written into the file; use ${{{key}}}")
                elif match["default"] not in PLACEHOLDER_PASSWORDS | {None, ""}:
                    problems.append(f"{name}.{key} defaults to {match['default']!r}")
            if re.search(r"://[^/@\s:]*:[^/@\s]+@", value):
                problems.append(f"{name}.{key} has a password inside a URL")
    assert not problems, f"secrets in docker-compose.yml: {problems}"


def test_storage_variables_name_registered_lightrag_storages(worker_env):
    from lightrag.kg import STORAGE_IMPLEMENTATIONS

    from aperag_pg.lightrag import register

    register()
    chosen, problems = {}, []
    for variables, _keyword, kind in STORAGE_VARIABLES:
        for variable in variables:
            if worker_env.get(variable):
                chosen[kind] = worker_env[variable]
                valid = STORAGE_IMPLEMENTATIONS[kind]["implementations"]
                if worker_env[variable] not in valid:
                    problems.append(f"{variable}={worker_env[variable]!r} (valid: {valid})")
    assert not problems, f"unknown LightRAG storages: {problems}"
    missing = {"KV_STORAGE", "VECTOR_STORAGE", "DOC_STATUS_STORAGE"} - set(chosen)
    assert not missing, f"worker selects no storage for {sorted(missing)}"


def test_default_deployment_fits_the_connection_budget(compose, worker_env):
    concurrency = worker_env.get("CELERY_WORKER_CONCURRENCY") or dockerfile_env().get(
        "CELERY_WORKER_CONCURRENCY"
    )
    assert concurrency, (
        "no CELERY_WORKER_CONCURRENCY: Celery would start one process per host CPU, each with "
        "its own pool, and the connection count would depend on the machine"
    )
    per_process = PostgresSettings.from_env(
        {k: v for k, v in worker_env.items() if v is not None}, dotenv_path=NO_DOTENV
    ).max_connections
    server_args = " ".join(command_args(compose["services"]["postgres"]) or [])
    found = re.search(r"max_connections=(\d+)", server_args)
    server_max = int(found[1]) if found else POSTGRES_DEFAULT_MAX_CONNECTIONS
    replicas = int((compose["services"]["worker"].get("deploy") or {}).get("replicas", 1))
    needed = replicas * int(concurrency) * per_process
    assert needed <= server_max - SERVER_RESERVED_CONNECTIONS, (
        f"{replicas} worker container(s) x {concurrency} processes x {per_process} connections "
        f"= {needed}, more than max_connections={server_max} minus "
        f"{SERVER_RESERVED_CONNECTIONS} reserved"
    )


def test_writable_paths_belong_to_the_images_user(compose):
    trees = chowned_trees()
    paths = {}
    for name, service in app_services(compose).items():
        working_dir = env_of(service).get("LIGHTRAG_WORKING_DIR")
        if working_dir:
            paths[f"{name} LIGHTRAG_WORKING_DIR"] = working_dir
        for arg in command_args(service) or []:
            if arg.startswith(("--schedule=", "-s=")):
                paths[f"{name} beat schedule"] = str(Path(arg.split("=", 1)[1]).parent)
    assert "worker LIGHTRAG_WORKING_DIR" in paths, "worker sets no LIGHTRAG_WORKING_DIR"
    not_writable = {what: path for what, path in paths.items() if not is_under(path, trees)}
    assert not not_writable, (
        f"not below a directory the Dockerfile chowns to its user ({trees}): {not_writable}"
    )


# -- the image ----------------------------------------------------------------------------


def test_image_is_python_311_slim():
    bases = dockerfile_args("FROM")
    assert bases and bases[-1].split()[0].startswith("python:3.11-slim"), bases


def test_image_runs_as_a_non_root_user():
    users = dockerfile_args("USER")
    assert users, "the Dockerfile never switches away from root (no USER)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the image runs as {users[-1]!r}"
    last_user = max(i for i, (kw, _) in enumerate(dockerfile_instructions()) if kw == "USER")
    later = [kw for kw, _ in dockerfile_instructions()[last_user:] if kw == "RUN"]
    assert not later, "RUN after the last USER runs as the unprivileged user: move it up"


def test_image_installs_the_lightrag_and_langgraph_extras():
    extras = set()
    for args in dockerfile_args("RUN"):
        if "pip install" in args:
            for match in re.finditer(r"\.\[(?P<extras>[^\]]*)\]", args):
                extras.update(e.strip() for e in match["extras"].split(","))
    missing = {"lightrag", "langgraph"} - extras
    assert not missing, f"the image does not install the extras {sorted(missing)}"


def test_image_copies_metadata_before_code_for_layer_caching():
    steps = dockerfile_instructions()

    def first(predicate) -> int:
        return next((i for i, step in enumerate(steps) if predicate(*step)), -1)

    metadata = first(lambda kw, args: kw == "COPY" and "setup.cfg" in args.split())
    install = first(lambda kw, args: kw == "RUN" and "pip install" in args and "lightrag" in args)
    code = first(lambda kw, args: kw == "COPY" and re.search(r"(^|\s)aperag_pg/?(\s|$)", args))
    app = first(lambda kw, args: kw == "COPY" and re.search(r"(^|\s)config/?(\s|$)", args))
    assert -1 not in (metadata, install, code, app), (metadata, install, code, app)
    assert metadata < install < code, (
        "copy setup.cfg/pyproject.toml/README.md and install the dependencies before copying "
        "the code, so a code change does not reinstall every dependency"
    )


def test_image_command_starts_the_prefork_worker():
    command = image_command()
    text = " ".join(command)
    assert command[0] == "celery" or command[:3] == ["python", "-m", "celery"], command
    assert re.search(r"(-A|--app)[ =]config\.celery\b", text), text
    assert "worker" in command, text
    assert re.search(r"(--pool[ =]|-P )prefork\b", text), text
    override = command_args(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["worker"])
    if override is not None:
        joined = " ".join(override)
        assert "config.celery" in joined and "worker" in override, joined
        assert re.search(r"(--pool[ =]|-P )prefork\b", joined), joined


def test_image_healthcheck_pings_its_own_worker():
    checks = dockerfile_args("HEALTHCHECK")
    assert checks, "the Dockerfile has no HEALTHCHECK"
    assert "inspect ping" in checks[-1] and "$HOSTNAME" in checks[-1], checks[-1]


def test_image_sets_only_known_variables():
    allowed = known_variables() | CELERY_CLI_VARIABLES | PYTHON_RUNTIME_VARIABLES
    unknown = sorted(set(dockerfile_env()) - allowed)
    assert not unknown, f"the Dockerfile sets variables that nothing reads: {unknown}"


def test_build_context_has_what_the_dockerfile_copies_and_no_secrets():
    needed = []
    for args in dockerfile_args("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        for source in words[:-1]:
            path = REPO_ROOT / source
            if path.is_dir():
                needed += [str(p.relative_to(REPO_ROOT)) for p in path.rglob("*.py")]
            else:
                needed.append(source)
    left_out = [p for p in needed if dockerignore_excludes(p)]
    assert needed and not left_out, (
        f".dockerignore leaves out what the Dockerfile copies: {left_out}"
    )
    private = [".env", ".venv/bin/python", ".git/config", "run/services/pg/PG_VERSION"]
    private += ["config/.env", "aperag_pg/__pycache__/pool.cpython-311.pyc"]
    sent = [p for p in private if not dockerignore_excludes(p)]
    assert not sent, f"the build context would include {sent}"


# -- Celery's command line ----------------------------------------------------------------


def test_celery_cli_allowlist_names_real_options():
    from celery.bin import celery as celery_cli

    assert re.search(
        r"auto_envvar_prefix\s*=\s*['\"]CELERY['\"]", inspect.getsource(celery_cli.main)
    )
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


_RUN_WORKER_COMMAND = """
import json, sys
import celery.app.base

seen = {}

class Worker:
    exitcode = 0
    def __init__(self, **kwargs):
        seen.update(kwargs)
    def start(self):
        pass

celery.app.base.Celery.Worker = property(lambda app: Worker)
sys.argv = json.loads(sys.argv[1])
from celery.__main__ import main
try:
    main()
except SystemExit:
    pass
pool = seen.get("pool")
print(json.dumps({
    "concurrency": seen.get("concurrency"),
    "pool": pool and f"{pool.__module__}.{pool.__qualname__}",
    "hostname": seen.get("hostname"),
}))
"""


def test_image_command_with_compose_environment_starts_the_configured_worker(worker_env):
    """The image's command through Celery's real CLI, with the worker's compose environment
    and a stand-in for the worker itself: concurrency and pool are the ones configured."""
    command = image_command()
    if command[:3] == ["python", "-m", "celery"]:
        command = ["celery", *command[3:]]
    env = {**dockerfile_env(), **{k: v for k, v in worker_env.items() if v is not None}}
    env.pop("PATH", None)
    env.update(PATH=os.environ.get("PATH", ""), HOSTNAME="worker-1")
    result = subprocess.run(
        [sys.executable, "-c", _RUN_WORKER_COMMAND, json.dumps(command)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    started = json.loads(lines[-1])
    assert started["pool"] == "celery.concurrency.prefork.TaskPool", started
    assert started["concurrency"] == int(env["CELERY_WORKER_CONCURRENCY"]), started
    assert started["hostname"].startswith("celery@"), started


# -- the PgBouncer override in docs/DEPLOYMENT.md -----------------------------------------


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, for mappings (enough for environment, depends_on)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def test_pgbouncer_override_in_the_docs_fits_the_compose_file(compose_raw):
    text = (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "pgbouncer:" in b]
    assert blocks, "docs/DEPLOYMENT.md has no PgBouncer compose snippet"
    merged = resolve(merge(compose_raw, yaml.safe_load(blocks[0])), OVERRIDDEN_SHELL)
    services = merged["services"]
    bouncer = services["pgbouncer"]
    assert re.fullmatch(r"(edoburu|bitnami)/pgbouncer:v?\d+\.\d+\.\d+[\w.-]*", bouncer["image"])
    bouncer_env = env_of(bouncer)
    assert bouncer_env.get("POOL_MODE") == "transaction", bouncer_env
    assert bouncer_env.get("DB_HOST") == "postgres", bouncer_env
    server = env_of(services["postgres"])
    assert (bouncer_env["DB_USER"], bouncer_env["DB_PASSWORD"], bouncer_env["DB_NAME"]) == (
        server["POSTGRES_USER"],
        server["POSTGRES_PASSWORD"],
        server["POSTGRES_DB"],
    )
    worker = env_of(services["worker"])
    assert worker["POSTGRES_HOST"] == "pgbouncer", worker
    assert worker.get("POSTGRES_STATEMENT_TIMEOUT", "0") == "0", (
        "PgBouncer refuses the statement_timeout startup option: keep it 0 there"
    )
    unknown = sorted(set(worker) - known_variables() - CELERY_CLI_VARIABLES)
    assert not unknown, f"the snippet sets variables nothing reads: {unknown}"
    for name, dependency in (("worker", "pgbouncer"), ("pgbouncer", "postgres")):
        condition = (services[name].get("depends_on") or {}).get(dependency, {}).get("condition")
        assert condition == "service_healthy", f"{name} -> {dependency}: {condition!r}"
    assert healthcheck_command(bouncer), "pgbouncer has no healthcheck to wait for"
