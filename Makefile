# The two commands a newcomer needs: `make demo` and `make test`. Everything installs from the
# hash-pinned requirements.lock into .venv; nothing is taken from the machine but python3.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)

.PHONY: help install demo test lint bench-matching lock clean

help:
	@echo "make demo            set up and start the marketplace (web + worker + beat) on SQLite"
	@echo "make test            install and run the whole test suite"
	@echo "make lint            ruff check"
	@echo "make bench-matching  benchmark the matching engine against the greedy baseline"
	@echo "make lock            re-resolve requirements.lock from pyproject.toml"

$(STAMP): requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: install
	bin/demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench-matching: install
	$(PY) bench/bench_matching.py $(BENCH_ARGS)

lock:
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) var
