# Everything a fresh machine with python3 and make needs: `make test` builds .venv and installs
# the test tools, plus redis-server/redis-cli/redis-benchmark (Debian's packages) as peers.
#
# What .venv holds is locked: uv.lock names every package at an exact version with its hashes,
# and uv itself is pinned, with hashes, in tools/uv-requirements.txt. So every machine, today or
# in a year, installs what CI installed. `make lock` and `make upgrade` change the lock on
# purpose; `make test-latest` runs the suite against the newest releases instead.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# uv never downloads an interpreter: the one that made .venv is the one used.
UV := UV_PYTHON_DOWNLOADS=never $(BIN)/uv
LATEST := .venv-latest
# A venv with nothing but the pinned uv: changing the lock must not need a .venv built from it
# (uv sync --locked refuses a lock that no longer matches pyproject.toml).
LOCKER := .venv-uv
EXTRAS := --all-extras

.PHONY: install system-deps lint format generate test test-fast test-latest lock upgrade bench demo docs clean

# A new lock (or a new uv) rebuilds .venv from nothing, so it holds exactly what the lock names:
# uv sync --inexact keeps pip, which the wheel-install test uses, and would keep nothing else.
$(STAMP): pyproject.toml uv.lock tools/uv-requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	    --no-deps -r tools/uv-requirements.txt
	$(UV) sync --locked --inexact $(EXTRAS) --python $(BIN)/python --quiet
	$(UV) pip freeze --python $(BIN)/python --exclude-editable > $(VENV)/locked-versions.txt
	@echo "installed from uv.lock: $$(wc -l < $(VENV)/locked-versions.txt) packages" \
	    "(sha256 $$(sha256sum < $(VENV)/locked-versions.txt | cut -c1-16)), listed in" \
	    "$(VENV)/locked-versions.txt: $$(grep -E '^(gunicorn|uvicorn|redis|starlette|django|pytest|mypy|ruff)==' $(VENV)/locked-versions.txt | paste -sd' ')"
	touch $(STAMP)

# The optional C helper of the shared region: uv's editable build compiles it (setup.py), and
# builds it again when its source changes (pyproject.toml's tool.uv cache-keys).
NATIVE := $(VENV)/.native
$(NATIVE): $(STAMP) setup.py blinkstore_gunicorn/shm/_native.c blinkstore_gunicorn/server/_fastcmd.c \
		blinkstore_gunicorn/server/_fasttypes.c blinkstore_gunicorn/server/_fastcmd.h \
		blinkstore_gunicorn/protocol/_split.c blinkstore_gunicorn/server/scripting/_luacall.c
	$(UV) sync --locked --inexact $(EXTRAS) --python $(BIN)/python --quiet
	touch $(NATIVE)

install: $(NATIVE)

# redis-server is the peer that tests and benchmarks compare against; redis-cli and
# redis-benchmark are the real RESP clients the store must satisfy; Prometheus's redis_exporter
# is the monitoring the store's INFO must feed.
system-deps:
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
	    && command -v redis-benchmark >/dev/null \
	    && command -v prometheus-redis-exporter >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server, redis-tools and prometheus-redis-exporter (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends redis-server redis-tools prometheus-redis-exporter >/dev/null; \
	else \
	    echo "need redis-server, redis-cli, redis-benchmark and prometheus-redis-exporter: install Debian's redis-server, redis-tools and prometheus-redis-exporter" >&2; \
	    exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/unasync.py --check

# The blocking client modules are generated from their asyncio sources (scripts/unasync.py).
generate: $(STAMP)
	$(BIN)/python scripts/unasync.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# pytest-xdist: one worker per core (at most 4); the tests marked `heavy` run on one worker, one
# at a time (CONTRIBUTING.md, "Running the suites"). PYTEST_PARALLEL="-n 0" runs in one process.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadgroup
test: $(NATIVE) system-deps lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Re-resolves uv.lock from pyproject.toml, keeping every version the ranges still allow.
$(LOCKER)/bin/uv: tools/uv-requirements.txt
	rm -rf $(LOCKER)
	$(PYTHON) -m venv $(LOCKER)
	$(LOCKER)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	    --no-deps -r tools/uv-requirements.txt

lock: $(LOCKER)/bin/uv
	UV_PYTHON_DOWNLOADS=never $(LOCKER)/bin/uv lock

# Moves every locked package to its newest release within pyproject.toml's ranges.
upgrade: $(LOCKER)/bin/uv
	UV_PYTHON_DOWNLOADS=never $(LOCKER)/bin/uv lock --upgrade

# The whole suite and lint against the newest releases, unlocked, in a venv of its own: breakage
# from a new redis-py, Starlette or mypy shows here before users (or the next `make upgrade`) see it.
test-latest: $(STAMP) system-deps
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(BIN)/python $(LATEST)
	$(UV) pip install --quiet --python $(LATEST)/bin/python --upgrade -e '.[test,lint,redis,fast,docs,scripting]'
	$(UV) pip list --python $(LATEST)/bin/python --format freeze \
	    | grep -E '^(gunicorn|uvicorn|redis|starlette|django|pytest|mypy|ruff)==' | paste -sd' '
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/ruff format --check .
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: no lint, no end-to-end tests.
test-fast: $(NATIVE)
	$(BIN)/python -m pytest -m "not slow" -x $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

# The FastAPI example under gunicorn: two uvicorn workers, one store started by the master.
DEMO_BIND ?= 127.0.0.1:8000
demo: $(STAMP)
	@echo "blinkstore demo: http://$(DEMO_BIND)/  (Ctrl-C stops gunicorn and its store)"
	@echo "Two workers, one value - run these in another terminal, a few times each:"
	@echo "  curl -X POST http://$(DEMO_BIND)/counter   # {\"value\": n+1, \"pid\": <one worker>}"
	@echo "  curl http://$(DEMO_BIND)/counter           # {\"value\": n, \"pid\": <either worker>}"
	DEMO_BIND=$(DEMO_BIND) $(BIN)/gunicorn -c examples/fastapi_app/gunicorn.conf.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LATEST) $(LOCKER) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache site
