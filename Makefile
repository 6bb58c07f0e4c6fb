# Applikant: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= /opt/applikant
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= /etc/systemd/system
SYSCONFDIR ?= /etc/applikant
DATADIR ?= /var/lib/applikant
SERVICE_USER ?= git
# Debian packages the tests drive for real (installed when missing and we are root).
DEB_PACKAGES := git openssh-server openssh-client iproute2 chromium

.PHONY: venv deps compile lint run test test-fast bench clean install install-units

venv: $(VENV)/.installed

# A plain-path editable install (compat mode): the setuptools import-hook finder
# would add ~10 ms to every `as`/`ah` start.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages (run as root to install):$$missing"; fi; \
	fi

# Bytecode is written explicitly: PYTHONDONTWRITEBYTECODE may be set, and `as`/`ah`
# would then compile their imports on every git fetch.
compile:
	@$(PY) -m compileall -q applikant bench

run: venv compile
	$(PY) -m applikant.cli.devrun

# Lint and types: ruff (rules and format) over everything, mypy over the package
# (strict on the node layer; see pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv deps compile lint
	$(PY) -m pytest -q

# The unit layer only: no daemons, no sshd, no browser (tests marked `slow` are
# left out; tests/conftest.py says which). A quick check while working.
test-fast: venv deps compile
	$(PY) -m pytest -q -m "not slow"

bench: venv compile
	$(PY) -m bench.ephemeral
	$(PY) -m bench.dist --tls

# The package in its own venv under PREFIX, units, the example config. A venv
# built under DESTDIR gets its paths rewritten to PREFIX (for packaging).
install:
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q --upgrade pip
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q .
	@if [ -n "$(DESTDIR)" ]; then \
	  grep -rlI --null "$(DESTDIR)$(PREFIX)" $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/pyvenv.cfg \
	    | xargs -0 -r sed -i "s|$(DESTDIR)$(PREFIX)|$(PREFIX)|g"; fi
	$(DESTDIR)$(PREFIX)/bin/python -m compileall -q $(DESTDIR)$(PREFIX)/lib
	install -d $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(PREFIX)/share/doc/applikant
	install -m 0644 etc/applikant.toml $(DESTDIR)$(SYSCONFDIR)/applikant.toml.example
	install -m 0644 etc/sshd_applikant.conf $(DESTDIR)$(SYSCONFDIR)/sshd_applikant.conf.example
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/applikant/README.md
	$(MAKE) install-units

# systemd units with this installation's paths filled in.
install-units:
	install -d $(DESTDIR)$(UNITDIR)
	for unit in systemd/*.service systemd/*.target; do \
	  sed -e "s|@PREFIX@|$(PREFIX)|g" -e "s|@BINDIR@|$(BINDIR)|g" \
	      -e "s|@CONFIG@|$(SYSCONFDIR)/applikant.toml|g" -e "s|@DATADIR@|$(DATADIR)|g" \
	      -e "s|@USER@|$(SERVICE_USER)|g" $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit); \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$unit); done

clean:
	rm -rf $(VENV) var .pytest_cache
