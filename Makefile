# aperag_pg: every target creates .venv and installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,bench,lightrag,webui,langgraph
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SERVICES_DIR ?= run/services
RUN_DIR ?= run
WORKER_NAME ?= aperag
CONCURRENCY ?= 2
# celery multi: one detached prefork worker with its pid and log files under $(RUN_DIR).
MULTI = $(PY) -m celery multi
MULTI_ARGS = $(WORKER_NAME) -A config.celery --pool=prefork --concurrency=$(CONCURRENCY) \
	--loglevel=INFO --pidfile=$(RUN_DIR)/%n.pid --logfile=$(RUN_DIR)/%n%I.log
# start and restart: until the worker's log says ready; non-zero, with its reason, if it quit.
WORKER_START_TIMEOUT ?= 60
STARTED = $(PY) -m devtools.worker_wait --pidfile $(RUN_DIR)/$(WORKER_NAME).pid \
	--logfile $(RUN_DIR)/$(WORKER_NAME).log --timeout $(WORKER_START_TIMEOUT) --

.PHONY: install test test-fast demo webui bench lint format worker worker-start worker-stop worker-restart \
	worker-status services-up services-down clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

# The suite in TEST_WORKERS processes (pytest-xdist), a test file's tests in one of them;
# each process starts its own PostgreSQL, Redis and PgBouncer (or, given POSTGRES_* and
# REDIS_URL, makes a database of its own there). TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The inner loop: unit and store tests on the embedded PostgreSQL, no worker processes.
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not processes"

demo: $(STAMP)
	$(PY) -m devtools.demo --stand-ins-unless-configured --services-dir $(SERVICES_DIR)

# LightRAG's server and WebUI on what the workers (or `make demo`) built: WORKSPACE=name to
# choose the workspace, WEBUI_PORT (9621), WEBUI_HOST (127.0.0.1).
webui: $(STAMP)
	$(PY) -m devtools.webui --services-dir $(SERVICES_DIR)

bench: $(STAMP)
	$(PY) -m bench.task_overhead
	$(PY) -m bench.stores
	$(PY) -m bench.vectors
	$(PY) -m bench.ingest
	$(PY) -m bench.query
	$(PY) -m bench.checkpoint
	$(PY) -m bench.memory_store
	$(PY) -m bench.fencing
	$(PY) -m bench.graph
	$(PY) -m bench.graph --fresh-hub
	$(PY) -m bench.worker_throughput
	$(PY) -m bench.scale_out
	$(PY) -m bench.chaos
	$(PY) -m bench.soak

lint: $(STAMP)
	$(PY) -m ruff check aperag_pg config tests bench devtools
	$(PY) -m ruff format --check aperag_pg config tests bench devtools
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format aperag_pg config tests bench devtools
	$(PY) -m ruff check --fix aperag_pg config tests bench devtools

# A prefork worker in the foreground, on the services named by POSTGRES_* / REDIS_URL (or .env).
worker: $(STAMP)
	$(PY) -m celery -A config.celery worker --pool=prefork --loglevel=INFO

# Detached worker. stop and restart are warm: running tasks finish first (SIGTERM).
worker-start: $(STAMP)
	@mkdir -p $(RUN_DIR)
	$(STARTED) $(MULTI) start $(MULTI_ARGS)

worker-stop: $(STAMP)
	$(MULTI) stopwait $(MULTI_ARGS)

worker-restart: $(STAMP)
	@mkdir -p $(RUN_DIR)
	$(STARTED) $(MULTI) restart $(MULTI_ARGS)

worker-status: $(STAMP)
	@pidfile=$(RUN_DIR)/$(WORKER_NAME).pid; \
	if [ -f $$pidfile ] && kill -0 $$(cat $$pidfile) 2>/dev/null; then \
		echo "worker $(WORKER_NAME) running, pid $$(cat $$pidfile)"; \
	else echo "worker $(WORKER_NAME) not running"; exit 1; fi

# Local PostgreSQL (with pgvector) and Redis that keep their data in $(SERVICES_DIR).
services-up: $(STAMP)
	$(PY) -m devtools.services up --dir $(SERVICES_DIR)

services-down: $(STAMP)
	$(PY) -m devtools.services down --dir $(SERVICES_DIR)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
