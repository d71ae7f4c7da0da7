# Two commands a new user needs: `make demo` and `make test`. Both create the virtualenv
# on first use. Variables: PYTHON (interpreter for the venv), VENV, DJANGO (pip spec),
# DB (sqlite | postgres | mysql), PYTEST_ARGS.
PYTHON ?= python3
VENV ?= .venv
DJANGO ?= Django>=5.2,<5.3
DB ?= sqlite
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
comma := ,
EXTRAS := dev,example$(if $(filter mysql,$(DB)),$(comma)mysql)

.PHONY: help venv demo demo-fix test lint format typecheck docs bench bench-short bench-instructions serve clean

help:
	@echo "make demo    - set up, seed the example project and audit it (SQLite)"
	@echo "make demo-fix - nplusone_audit --fix --apply on a throwaway copy of the example project"
	@echo "make test    - run the test suite (DB=sqlite|postgres|mysql)"
	@echo "make lint    - ruff + mypy"
	@echo "make docs    - build the docs with warnings as errors"
	@echo "make bench   - overhead benchmark against the alternatives (bench-short: CI's quick run)"
	@echo "make bench-instructions - the same overhead in CPU instructions (valgrind), noise-free"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]' '$(DJANGO)'
	@touch $@

venv: $(STAMP)
	@if [ "$(DB)" = mysql ] && ! $(BIN)/python -c 'import MySQLdb' 2>/dev/null; then \
		$(BIN)/python -m pip install -q -e '.[mysql]' '$(DJANGO)'; fi

test: venv
	NPLUSONE_GUARD_TEST_DB=$(DB) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_nplusone_guard tests benchmarks

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The example project follows DB=... too (its database, nplusone_example, must exist).
demo: venv
	cd example_project && EXAMPLE_DB=$(DB) ../$(BIN)/python manage.py demo

# `nplusone_audit --fix --apply` on a throwaway copy of the example project (SQLite): the
# diff of what was written, what was reverted or left by hand, and queries before/after.
# KEEP=1 keeps the copy to look at.
demo-fix: venv
	@set -e; dir=$$(mktemp -d); root="$(CURDIR)"; \
	cp -r example_project "$$dir/"; rm -f "$$dir/example_project/db.sqlite3"; \
	cd "$$dir/example_project"; export EXAMPLE_DB=sqlite EXAMPLE_SQLITE_PATH="$$dir/db.sqlite3"; \
	"$$root/$(BIN)/python" manage.py migrate -v0; \
	"$$root/$(BIN)/python" manage.py seed --size 12; \
	status=0; "$$root/$(BIN)/python" manage.py nplusone_audit --all --explain --fix --apply \
		-v0 || status=$$?; \
	if [ -n "$(KEEP)" ]; then echo "The copy: $$dir/example_project"; else rm -rf "$$dir"; fi; \
	exit $$status

# Benchmark: its own virtualenv (benchmarks/.venv), so the tools compared against never
# touch the project's. django-nplus1 needs Python >= 3.12: the first of python3.13/3.12 that
# runs is used, else PYTHON. BENCH_ARGS passes options (e.g. --rounds 9 --variants guard).
BENCH_PYTHON ?= $(shell for p in python3.13 python3.12; do $$p -c '' 2>/dev/null && { command -v $$p; exit; }; done; echo $(PYTHON))
BENCH_VENV ?= benchmarks/.venv
BENCH_ARGS ?=
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): benchmarks/requirements.txt benchmarks/alternatives.txt
	@test -x $(BENCH_VENV)/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements.txt
	@for pkg in $$(grep -v '^#' benchmarks/alternatives.txt); do \
		$(BENCH_VENV)/bin/python -m pip install -q "$$pkg" \
			|| echo "benchmark: $$pkg did not install here; its variant will be skipped"; done
	@touch $@

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

bench-short: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.run --short $(BENCH_ARGS)

# The same pages counted in CPU instructions by valgrind: steady where time ratios are noisy.
# INSTR_ARGS passes options (e.g. --variants guard,toolbar-panel).
INSTR_ARGS ?=
bench-instructions: $(BENCH_STAMP)
	@command -v valgrind >/dev/null || { echo "bench-instructions needs valgrind (apt-get install valgrind)"; exit 1; }
	$(BENCH_VENV)/bin/python -m benchmarks.instructions $(INSTR_ARGS)

serve: venv
	cd example_project && export EXAMPLE_DB=$(DB) && ../$(BIN)/python manage.py migrate -v0 && \
		../$(BIN)/python manage.py runserver

docs: venv
	@$(BIN)/python -c 'import mkdocs, material' 2>/dev/null || \
		$(BIN)/python -m pip install -q -e '.[docs]' '$(DJANGO)'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf .venv* benchmarks/.venv build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
