# Two commands: `make run` and `make test`. Everything else is installed into .local/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .local/venv
VENV_DB := .local/venv-db
VENV_FAUST := .local/venv-faust
KAFKA_LIB := .local/kafka/lib
PY := $(VENV)/bin/python

.PHONY: run demo demo-test test faults chaos install browser lint bench clean prometheus-tools java-tools docs

# `make demo` (or `make run DEMO=1`): `make run`, then the seed report's April 2024 province
# posted through ingest (about 780,000 events, 2 minutes here); a second run adds nothing.
demo: install
	@DEMO=1 PYTHONPATH=. $(PY) -m deploy.local.run

# `make run PROMETHEUS=1` also starts Prometheus with the alert rules (PROMETHEUS_PORT, 9090).
run: install
	@PYTHONPATH=. $(PY) -m deploy.local.run

# Two pytest workers (TEST_WORKERS): a test file runs whole on one, beside the other's; the
# suite's servers and pipelines are each worker's own (free ports, fresh topics and databases).
TEST_WORKERS ?= 2
test: install browser
	@$(MAKE) --no-print-directory lint
	@PYTHONPATH=. $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests/faults tests/e2e tests/unit $(PYTEST_ARGS)

# `make demo` end to end, twice, with the dashboard in the browser (tests/demo/): 10 to 15
# minutes on 2 cores, so it is not part of `make test`; CI runs it after `make test`.
demo-test: install browser
	@PYTHONPATH=. $(PY) -m pytest -s tests/demo $(PYTEST_ARGS)

# The fault-injection suite alone (issue 4; `make test` runs it first, on servers of its own
# that are gone before the rest starts): 100,000 events per scenario, 7 scenarios.
faults: install
	@PYTHONPATH=. $(PY) -m pytest -s tests/faults $(PYTEST_ARGS)

# A 10-minute soak: steady events while things break, then calm; totals exact, memory bounded.
# CHAOS_SECONDS, CHAOS_RATE (events/s) and CHAOS_FAULT_EVERY_S tune it; report in
# tests/artifacts/chaos.json.
chaos: install
	@PYTHONPATH=. $(PY) -m pytest -s tests/chaos $(PYTEST_ARGS)

# The documentation site (docs/, mkdocs.yml) into .local/site/, offline; open its index.html.
docs: install
	@NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "docs built: .local/site/index.html"

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services deploy bench
	@promtool check config deploy/prometheus/prometheus.yml >/dev/null

install: $(VENV)/.installed $(VENV_DB)/.installed prometheus-tools $(KAFKA_LIB)/.installed

# Apache Kafka (the local broker): the jars of deploy/local/kafka/pom.xml and what they need at
# run time, fetched by Maven into .local/kafka/lib (about 46 MB; -C: a checksum that does not
# match fails the fetch). Maven keeps its downloads in ~/.m2, so a second fetch is offline.
$(KAFKA_LIB)/.installed: deploy/local/kafka/pom.xml | java-tools
	@echo "fetching Apache Kafka's jars with Maven (deploy/local/kafka/pom.xml)"
	@rm -rf $(KAFKA_LIB) $(KAFKA_LIB).partial
	@mvn -B -q -C -Dstyle.color=never -f deploy/local/kafka/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB).partial
	@mv $(KAFKA_LIB).partial $(KAFKA_LIB)
	@touch $@

# The JDK that runs the broker and Maven that fetches it, from Debian's packages when missing.
java-tools:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Debian's default-jdk-headless and maven packages"; \
	  $(APT_INSTALL) default-jdk-headless maven >/dev/null; }

# Prometheus and promtool (alert rules are unit-tested with promtool and on a real Prometheus)
# come from Debian's `prometheus` package: about 10 s to install, once.
prometheus-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool, prometheus)"; \
	  $(APT_INSTALL) prometheus >/dev/null; }

# Debian packages, as root or through sudo (the shell command's start; the packages follow).
APT_INSTALL = sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); $$sudo apt-get update -qq && \
  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	@touch $@

# The dashboard's browser tests drive Debian's chromium through Playwright's bundled driver
# (Playwright's own browser download is never used). About 20 s on a clean machine.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# SecantusDB (the MongoDB-protocol server) gets its own environment: it pulls numpy and shapely.
$(VENV_DB)/.installed:
	@test -x $(VENV_DB)/bin/python || $(PYTHON) -m venv $(VENV_DB)
	$(VENV_DB)/bin/python -m pip install --quiet --disable-pip-version-check 'SecantusDB==0.7.0b3'
	@touch $@

# Every figure beside its baseline, measured in one run; writes BENCHMARKS.md (issue 8).
# Full sizes: about 27 minutes on the local servers (the goal is 30; BENCHMARKS.md, Sizes); `make bench QUICK=1` under 5.
# Baseline (c) runs faust-streaming in an environment of its own (it pins its own dependencies).
bench: install $(VENV_FAUST)/.installed
	@PYTHONPATH=. nice -n 5 $(PY) -m bench $(if $(QUICK),--quick,) $(BENCH_ARGS)

$(VENV_FAUST)/.installed:
	@test -x $(VENV_FAUST)/bin/python || $(PYTHON) -m venv $(VENV_FAUST)
	$(VENV_FAUST)/bin/python -m pip install --quiet --disable-pip-version-check 'faust-streaming==0.15.3'
	@touch $@

clean:
	rm -rf .local/venv .local/venv-db .local/venv-faust .local/logs .local/kafka
