# probebook: `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
# test-main runs everything on 3.11; the conformance suite also runs on each of these found
CONFORMANCE_PYTHONS ?= 3.9 3.10 3.12 3.13

.PHONY: venv system-deps demo test test-main test-conformance bench mutation clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (or run: make PY=python3)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[lab,test]"
	$(VENV)/bin/pip install -q --no-deps "httpbin==0.10.4"  # a third-party app the fleet tests run under gunicorn
	touch $@

venv: $(VENV)/.installed

# Debian packages (prometheus, alertmanager, redis, chromium, wrk): installed where apt and root allow
system-deps:
	@./.ci/apt-install

demo: venv system-deps
	$(VENV)/bin/python -m probebook.demo

test: venv system-deps test-main test-conformance

test-main: venv
	$(VENV)/bin/python -m pytest -q tests
	# every notebook under plain --nbval: stored outputs compared after notebooks/nbval-sanitize.cfg (cells
	# tagged nbval-ignore-output say why); the quickstart's last cells investigate a running lab, here none
	# (tests/lab runs them on one). notebooks/refresh_outputs.py stores the outputs.
	PROBEBOOK_LAB_DIR=$$(mktemp -d) $(VENV)/bin/python -m pytest -q -p no:cacheprovider --nbval \
	  --nbval-sanitize-with notebooks/nbval-sanitize.cfg notebooks/*.ipynb

# One venv per Python found (pyenv or PATH); each runs the conformance and unit suites.
test-conformance:
	@set -e; ran=""; skipped=""; for v in $(CONFORMANCE_PYTHONS); do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python 2>/dev/null | sort -V | tail -1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v || true); \
	  if [ -z "$$py" ] && [ "$${CI:-}" = true ]; then \
	    echo "conformance: python $$v not found; CI=true needs every one of $(CONFORMANCE_PYTHONS) (pyenv install $$v)" >&2; exit 1; fi; \
	  if [ -z "$$py" ]; then echo "conformance: python $$v not found, skipped"; skipped="$$skipped $$v"; continue; fi; \
	  env=.venv-$$v; \
	  if [ ! -f $$env/.installed ] || [ pyproject.toml -nt $$env/.installed ]; then \
	    $$py -m venv $$env && $$env/bin/pip install -q -e ".[conformance]" && touch $$env/.installed; fi; \
	  echo "== conformance on $$($$env/bin/python -V)"; \
	  $$env/bin/python -m pytest -q -p no:cacheprovider tests/conformance tests/unit; \
	  ran="$$ran $$v"; \
	done; echo "conformance ran on:$$ran$${skipped:+ (skipped, not found:$$skipped)}"

bench: venv system-deps
	$(VENV)/bin/pip install -q -e ".[bench]"
	$(VENV)/bin/python -m bench.run

# Mutation testing of the agent's core (docs/testing.md): long, not part of `make test`. MUTATE narrows it,
# e.g. make mutation MUTATE=probebook/agent/control/audit.py
MUTATE ?= probebook/agent/expr/*.py probebook/agent/capture/*.py probebook/agent/control/audit.py probebook/agent/probes.py
mutation: venv
	$(VENV)/bin/pip install -q "mutmut>=3.8,<4"
	rm -rf mutants
	$(VENV)/bin/python bench/mutation.py run $(MUTATE)

clean:
	rm -rf $(VENV) .venv-3.* *.egg-info .pytest_cache mutants
