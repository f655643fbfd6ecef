# Everything a fresh machine with python3 and make needs: `make test` builds .venv and installs
# the test tools, plus redis-server/redis-cli/redis-benchmark (Debian's packages) as peers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps lint format generate test test-fast bench demo docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,redis,fast,docs]'
	touch $(STAMP)

install: $(STAMP)

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

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: no lint, no end-to-end tests.
test-fast: $(STAMP)
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
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache site
