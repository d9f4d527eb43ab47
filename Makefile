# Two commands do all set-up on a fresh machine:
#   make demo   -- create/refresh .venv, start the server on the embedded default, replay a bursty trace
#   make test   -- create/refresh .venv, run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

.PHONY: venv demo test bench clean

venv: $(STAMP)

# Refresh whenever the declared dependencies change. torch comes pinned from constraints.txt:
# an unpinned torch would pull gigabytes of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,ray]'
	touch $@

demo: venv
	$(BIN)/python -m loadgen demo

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m models bench
	$(BIN)/python -m shm bench
	$(BIN)/python -m server bench

clean:
	rm -rf $(VENV) results .pytest_cache
