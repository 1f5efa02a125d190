# genrec: `make demo` runs one nightly run end to end; `make test` runs the test suite.
# Both create .venv when missing, install the locked dependencies, and start the
# services they need (a local PostgreSQL server, an S3 endpoint for tests) themselves.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench-report install system-deps clean audit

demo: install system-deps
	$(VENV)/bin/genrec demo

test: install system-deps lint
	$(PY) -m pytest

# Lint, format, types and the import layers (contracts in pyproject.toml); `make test` runs these first.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

install: $(STAMP)

# system-deps first (order only): scikit-sparse compiles against SuiteSparse's headers
$(STAMP): pyproject.toml constraints.txt | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Java (for Spark), the PostgreSQL server binaries, SuiteSparse (sansa) and Chromium (UI test) come from the system; as root
# they are installed from Debian's packages when missing, otherwise we say what to do.
system-deps:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; \
	  else echo "Java 17 is needed by Spark: install openjdk-17-jre-headless" >&2; exit 1; fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  [ -n "$$GENREC_PG_DSN" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL server binaries are needed: apt-get install postgresql, or set GENREC_PG_DSN" >&2; exit 1; fi; }
	@[ -f /usr/include/suitesparse/cholmod.h ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsuitesparse-dev >/dev/null; \
	  else echo "SuiteSparse's headers are needed to build scikit-sparse (sansa): apt-get install libsuitesparse-dev" >&2; exit 1; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not found; the UI page's browser test will be skipped (apt-get install chromium)" >&2; fi; }

# The tables in bench/README.md and the plots in docs/, rebuilt from bench/results/*.json.
bench-report: install
	$(VENV)/bin/genrec bench report

clean:
	rm -rf .state

# Known vulnerabilities in the pinned requirements (pip-audit in its own throwaway venv; needs PyPI's
# JSON API or api.osv.dev to be reachable). The CPU tag of torch is dropped: advisories name versions.
audit:
	$(PYTHON) -m venv .state/audit-venv
	.state/audit-venv/bin/pip install -q pip-audit
	sed 's/^torch==\(.*\)+cpu$$/torch==\1/' constraints.txt > .state/audit-requirements.txt
	.state/audit-venv/bin/pip-audit -r .state/audit-requirements.txt --no-deps --disable-pip --strict

