# aperag_pg: every target creates .venv and installs what it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,bench,lightrag,langgraph
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SERVICES_DIR ?= run/services

.PHONY: install test demo bench lint format worker services-up services-down clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m aperag_pg.demo

bench: $(STAMP)
	$(PY) bench/task_overhead.py

lint: $(STAMP)
	$(PY) -m ruff check aperag_pg config tests bench
	$(PY) -m ruff format --check aperag_pg config tests bench

format: $(STAMP)
	$(PY) -m ruff format aperag_pg config tests bench
	$(PY) -m ruff check --fix aperag_pg config tests bench

# A prefork worker in the foreground, on the services named by POSTGRES_* / REDIS_URL (or .env).
worker: $(STAMP)
	$(PY) -m celery -A config.celery worker --pool=prefork --loglevel=INFO

# Local PostgreSQL (with pgvector) and Redis that keep their data in $(SERVICES_DIR).
services-up: $(STAMP)
	$(PY) -m aperag_pg.devservices up --dir $(SERVICES_DIR)

services-down: $(STAMP)
	$(PY) -m aperag_pg.devservices down --dir $(SERVICES_DIR)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
