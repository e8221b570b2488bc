# The two commands a newcomer needs: `make demo` and `make test`. Everything installs from the
# hash-pinned requirements.lock into .venv; nothing is taken from the machine but python3.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)
# htmx and Chart.js for the web pages, from the npm registry at the versions package-lock.json pins.
VENDOR := marketplace/static/vendor
ASSETS := $(VENDOR)/.fetched-$(shell cat package.json package-lock.json | sha1sum | cut -c1-12)

.PHONY: messages help install assets tools demo test lint audit bench-matching load attacks report lock clean

help:
	@echo "make demo            set up and start the marketplace (web + worker + beat) on SQLite"
	@echo "make test            install and run the whole test suite"
	@echo "make lint            ruff check, the import contracts (lint-imports) and the types (mypy)"
	@echo "make bench-matching  benchmark the matching engine against the greedy baseline, and online rounds against offline"
	@echo "make load            the API under wrk (gunicorn, PostgreSQL, Redis, a real worker): req/s, p50/p99, POST to match"
	@echo "make attacks         replay issue 14's seven attacks against the shipped commands (PostgreSQL, own redis-server)"
	@echo "make report          simulate the market under three policies and the engine with market features; write docs/report/"
	@echo "make messages        collect and compile the translation catalogues (zh-hans, en)"
	@echo "make lock            re-resolve requirements.lock from pyproject.toml"
	@echo "make assets          fetch htmx and Chart.js (pinned in package-lock.json) into marketplace/static/vendor"
	@echo "make tools           install Debian's chromium, chromium-driver, wrk and nginx for the browser, load and proxy tests (as root)"
	@echo "make audit           pip-audit the locked dependencies (needs the PyPI JSON API or OSV online)"

# The gpumkt SDK and CLI (client/) go in last, from the source, without their dependencies (the lock
# has them) or a download (its build backend, flit_core, is in the lock too): .venv/bin/gpumkt.
$(STAMP): requirements.lock client/pyproject.toml $(wildcard client/gpumkt/*.py client/gpumkt/*/*.py)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation ./client
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

$(ASSETS): package.json package-lock.json
	python3 bin/fetch_assets.py
	rm -f $(VENDOR)/.fetched-* && touch $(ASSETS)

assets: $(ASSETS)

# System tools the tests drive: Debian's Chromium and its driver for the browser tests (a test
# tool's own browser download does not work here), wrk for the load script and nginx for the proxy
# tests (tests run their own nginx on loopback ports; the package's service is not used), gettext
# for the translation catalogues' checks, and Noto CJK so that screenshots show Chinese. Installed
# when missing and we are root (the test machine and CI); otherwise the tests that need them skip
# saying so, and fail under REQUIRE_SERVICES=1.
TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/wrk /usr/sbin/nginx /usr/bin/msgfmt /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
tools:
	@if ls $(TOOLS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver wrk nginx gettext fonts-noto-cjk \
		|| echo "could not install chromium/wrk/nginx/gettext/fonts-noto-cjk; the tests that need them will skip (fail under REQUIRE_SERVICES=1)"; \
	else echo "missing $(TOOLS): run 'sudo apt-get install chromium chromium-driver wrk nginx gettext fonts-noto-cjk' for the browser, load and proxy tests"; fi

demo: install assets
	bin/demo

test: install assets tools
	$(PY) -m pytest $(PYTEST_ARGS)

# The translation catalogues (docs/i18n.md): collect every marked string into
# marketplace/locale/{zh_Hans,en} and compile the .mo files that ship with the project.
messages: install
	$(PY) manage.py catalogue

# The rules' settings are in pyproject.toml: [tool.ruff], [tool.importlinter] and [tool.mypy]
# (mypy keeps its cache in .mypy_cache). make test runs the last two as well (tests/test_architecture.py).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# Known vulnerabilities in the exact locked versions. --strict fails when a package could not be
# audited, so an unreachable vulnerability service is an error, never a silent "clean".
audit: install
	$(VENV)/bin/pip-audit --strict --disable-pip --require-hashes -r requirements.lock

# The engine against the greedy baseline on seeded instances, then rounds online (one arrival at a
# time, today's engine and the look-ahead) against the offline optimum, then one full round (snapshot, solve,
# apply) at 10k x 2k on the PostgreSQL at BENCH_DATABASE_URL (default: the local server).
bench-matching: install
	$(PY) bench/bench_matching.py $(BENCH_ARGS)
	$(PY) bench/bench_online.py
	$(PY) bench/bench_round.py
	$(PY) bench/bench_inference.py

# The API under wrk on loopback: gunicorn on a fresh PostgreSQL database (mkt_load), Redis DBs 10/11
# and a real Celery worker; throughput and latency of the searches and submissions against a trivial
# endpoint, then POST-to-match times under search load. Needs the servers and /usr/bin/wrk (make tools).
LOAD_ARGS ?=
load: install
	$(PY) bench/load.py $(LOAD_ARGS)

# Issue 14's seven findings replayed from outside: gunicorn as the Dockerfile runs it, worker and beat
# as docker-compose.yml runs them, on production settings, PostgreSQL (ATTACKS_ARGS: --database-url)
# and a redis-server of the script's own. One line per outcome; non-zero exit if any regressed.
ATTACKS_ARGS ?=
attacks: install
	$(PY) bench/attacks.py $(ATTACKS_ARGS)

# The same seeded demand under the engine, nearest-region-first, cheapest-first and the engine with
# market features, each on its own fresh SQLite database (temporary folders; var/ is not touched),
# then docs/report/README.md + plots; the same for the idle80 scenario in docs/report/idle80/, and the
# inference scenario (the engine with substitution across GPU models, the engine held to each buyer's
# first-choice GPU model, nearest-region-first) in docs/report/inference/ (INFERENCE_ARGS).
REPORT_ARGS ?= --days 3 --seed 2026
INFERENCE_ARGS ?= --days 2 --seed 2026
report: install
	$(PY) manage.py simulate --policy all $(REPORT_ARGS) --report docs/report --json docs/report/figures.json
	$(PY) manage.py simulate --policy all --scenario idle80 $(REPORT_ARGS) --report docs/report/idle80 --json docs/report/idle80/figures.json
	$(PY) manage.py simulate --policy all --scenario inference $(INFERENCE_ARGS) --report docs/report/inference --json docs/report/inference/figures.json

lock:
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) var $(VENDOR)/*.js $(VENDOR)/.fetched-*
