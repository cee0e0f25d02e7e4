# Two commands for a newcomer: `make demo` and `make test`. Needs only python3 (3.11+) and make.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SCORING := $(VENV)/bin/scoring
DAYS ?= 60
ROWS_PER_DAY ?= 5000
# Train on the first 40 of the 60 sample days; the last 20 days have categorical levels unseen in training.
DATES := $(shell $(PYTHON) -c "import datetime as d; y=d.datetime.now(d.timezone.utc).date()-d.timedelta(days=1); print(y-d.timedelta(days=$(DAYS)-1), y-d.timedelta(days=20))")
TRAIN_START := $(word 1,$(DATES))
TRAIN_END := $(word 2,$(DATES))

.PHONY: demo test lint bench sync clean docs

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

sync: $(VENV)/.synced

demo: sync
	$(SCORING) sample-data --days $(DAYS) --rows-per-day $(ROWS_PER_DAY)
	@if [ ! -s models/loan_default/aliases.jsonl ]; then \
	  $(SCORING) train --start $(TRAIN_START) --end $(TRAIN_END); fi
	$(SCORING) run
	$(SCORING) runs --limit 5
	@echo
	@echo 'To type scoring commands yourself, put the environment on your PATH (once per shell):'
	@echo '  export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"'
	@echo 'Then, for example: scoring runs; scoring report --help. Docs: docs/getting-started.md (make docs).'

test: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The documentation site (docs/, mkdocs.yml) into site/: offline, strict (a broken link or an unlisted page fails).
docs: sync
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: sync
	$(VENV)/bin/python benchmarks/bench_core.py

clean:
	rm -rf results models sample_data/sample.duckdb site

# Airflow locally (see docs/airflow.md): a home in ./airflow_home, this repo's dags.
AIRFLOW_ENV := PATH=$(CURDIR)/$(VENV)/bin:$$PATH AIRFLOW_HOME=$(CURDIR)/airflow_home \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__LOAD_EXAMPLES=False
.PHONY: airflow
airflow: sync
	$(AIRFLOW_ENV) airflow db migrate
	$(AIRFLOW_ENV) airflow pools set scoring_publish 1 "single writer of the results database"
	$(AIRFLOW_ENV) airflow standalone

# A local CeleryExecutor cluster (see docs/scaling-out.md): api-server, scheduler, dag-processor and
# CLUSTER_WORKERS Celery workers; PostgreSQL metadata DB $(CLUSTER_DB), Redis db $(CLUSTER_REDIS_DB).
CLUSTER_HOME ?= $(CURDIR)/airflow_cluster
CLUSTER_DB ?= scoring_airflow
CLUSTER_REDIS_DB ?= 5
CLUSTER_PORT ?= 8081
CLUSTER_WORKERS ?= 2
CLUSTER_ARGS ?=
.PHONY: cluster-up cluster-down cluster-status
cluster-up: sync
	$(VENV)/bin/python -m deploy.cluster up --home $(CLUSTER_HOME) --db $(CLUSTER_DB) --redis-db $(CLUSTER_REDIS_DB) \
	  --api-port $(CLUSTER_PORT) --workers $(CLUSTER_WORKERS) $(CLUSTER_ARGS)
cluster-down:
	$(VENV)/bin/python -m deploy.cluster down --home $(CLUSTER_HOME) $(CLUSTER_ARGS)
cluster-status:
	$(VENV)/bin/python -m deploy.cluster status --home $(CLUSTER_HOME)
