# aperag_pg Celery worker image: the package with its `lightrag` and `langgraph` extras,
# the Celery app in config/, run as an unprivileged user. See docs/DEPLOYMENT.md.
# With --build-arg EXTRAS=lightrag,langgraph,webui it also runs LightRAG's WebUI
# (`python -m aperag_pg webui`, the compose file's webui service).
#
#   docker build -t aperag-pg:local .
#   docker run --rm -e POSTGRES_HOST=... -e POSTGRES_PASSWORD=... -e REDIS_URL=... aperag-pg:local
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. Dependencies. Only the package metadata is copied, so this (slow) layer is rebuilt
#    only when setup.cfg, pyproject.toml or README.md change, not on every code change.
#    Without the code the build produces an empty aperag_pg distribution; step 2 replaces it.
ARG EXTRAS=lightrag,langgraph
COPY setup.cfg pyproject.toml README.md ./
RUN pip install ".[${EXTRAS}]" \
    && rm -rf build aperag_pg.egg-info

# 2. The code: the package (installed into site-packages) and the Celery app (config/,
#    imported from the working directory by `celery -A config.celery`).
COPY aperag_pg/ aperag_pg/
COPY config/ config/
RUN pip install --no-deps . \
    && rm -rf build aperag_pg.egg-info

# An unprivileged user with a fixed numeric id (so runAsNonRoot-style checks can verify it).
# The code stays owned by root and read-only for it; it writes only below /var/lib/aperag_pg:
# LightRAG's working directory and Celery beat's schedule file.
RUN groupadd --system --gid 10001 aperag \
    && useradd --system --uid 10001 --gid aperag --home-dir /var/lib/aperag_pg \
        --shell /usr/sbin/nologin aperag \
    && mkdir -p /var/lib/aperag_pg/lightrag /var/lib/aperag_pg/beat \
    && chown -R aperag:aperag /var/lib/aperag_pg

# LIGHTRAG_WORKING_DIR is read by aperag_pg (one subdirectory per worker process).
# CELERY_WORKER_CONCURRENCY is read by Celery's own command line (`celery worker
# --concurrency`); without it Celery starts one child per host CPU, and every child holds
# its own pool of up to POSTGRES_MAX_CONNECTIONS connections.
ENV LIGHTRAG_WORKING_DIR=/var/lib/aperag_pg/lightrag \
    CELERY_WORKER_CONCURRENCY=2

USER 10001:10001

# Healthy = this container's worker answers a ping through the broker. Celery names the node
# celery@<hostname>, and Docker sets HOSTNAME to the container's host name.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD celery -A config.celery inspect ping --destination "celery@$HOSTNAME" --timeout 10 > /dev/null || exit 1

# Exec form: celery is the process that receives SIGTERM from `docker stop` and answers it
# with a warm shutdown (running tasks finish, then the pools close).
CMD ["celery", "-A", "config.celery", "worker", "--pool=prefork", "--loglevel=INFO"]
