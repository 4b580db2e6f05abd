# Two set-up commands, each self-contained on a fresh Debian machine:
#   make run    installs ackd in .venv and serves config.example.yaml on the embedded SQLite store
#   make test   installs everything the tests need (Alertmanager too, when root) and runs them all
VENV ?= .venv
PY := $(VENV)/bin/python
AM_BIN := /usr/bin/prometheus-alertmanager

.PHONY: run test lint bench system-deps clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/ackd serve --config config.example.yaml

# The end-to-end tests drive the real Alertmanager, and the quick start test runs the README's
# curl; the deployment tests run Prometheus, promtool and systemd-analyze, the web page's tests
# chromium, the PostgreSQL store's tests initdb and pg_ctl: install them when we can (root with
# apt).
system-deps:
	@missing=""; [ -x $(AM_BIN) ] || missing="prometheus-alertmanager"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check receiver tests $(wildcard bench)
	$(VENV)/bin/mypy receiver

# Two pytest processes at once, one for the modules that start real processes and time them
# (`serial`, tests/conftest.py), one for the rest; each writes its log, shown when both ended.
# Either failing fails the target.
test: $(VENV)/.installed system-deps lint
	@rm -f .pytest-serial.log .pytest-rest.log
	@$(VENV)/bin/pytest -p no:cacheprovider -m serial > .pytest-serial.log 2>&1 & serial=$$!; \
	$(VENV)/bin/pytest -p no:cacheprovider -m 'not serial' > .pytest-rest.log 2>&1; rest=$$?; \
	wait $$serial; serial=$$?; \
	echo "== tests that start processes and time them (-m serial): exit $$serial"; \
	cat .pytest-serial.log; \
	echo "== the rest (-m 'not serial'): exit $$rest"; \
	cat .pytest-rest.log; \
	[ $$serial -eq 0 ] && [ $$rest -eq 0 ]

bench: $(VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
