# Applikant: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# `make install`: the package in its own venv under PREFIX, links to its commands
# in BINDIR (on PATH), units in UNITDIR, config and sshd snippet in SYSCONFDIR.
# The paths are written into the installed package, so `applikant init` and the
# CLIs use them without APPLIKANT_CONFIG or --data-dir.
PREFIX ?= /opt/applikant
DESTDIR ?=
BINDIR ?= /usr/local/bin
UNITDIR ?= /etc/systemd/system
SYSCONFDIR ?= /etc/applikant
DATADIR ?= /var/lib/applikant
SERVICE_USER ?= git
# systemd makes DATADIR (StateDirectory=) only when it lies under /var/lib;
# elsewhere `applikant init` makes it.
STATE_DIRECTORY = $(patsubst /var/lib/%,%,$(filter /var/lib/%,$(DATADIR)))
COMMANDS := applikant applikant-as applikant-ah applikant-keys-for
# The Python of the installed venv: Debian's (apt-get install python3-venv). Not
# one under /root or /home (pyenv): the units' ProtectHome hides it from the daemons.
INSTALL_PYTHON ?= /usr/bin/python3
# Debian packages the tests drive for real (installed when missing and we are root).
DEB_PACKAGES := git openssh-server openssh-client iproute2 chromium python3-venv postgresql

.PHONY: venv deps compile lint run test test-fast bench clean install install-units

venv: $(VENV)/.installed

# The editable install is a plain path in a .pth file, not setuptools' import-hook
# finder (~10 ms more on every `as`/`ah` start): pyproject.toml's `package-dir`
# maps the packages to the checkout's root, which setuptools serves that way.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
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

# The package in its own venv under PREFIX, made by INSTALL_PYTHON. It is built
# from a copy of the sources, which also gets applikant/_paths.py with the paths
# above: nothing is written into the checkout. A venv built under DESTDIR gets
# its paths rewritten to PREFIX.
install:
	@python=$$(readlink -f "$$(command -v $(INSTALL_PYTHON))"); case "$$python" in \
	  ""|/root/*|/home/*|/run/user/*|/tmp/*|/var/tmp/*) echo "make install: INSTALL_PYTHON=$(INSTALL_PYTHON)" \
	    "($${python:-not found}) is missing or hidden from the daemons (ProtectHome, PrivateTmp);" \
	    "use Debian's: apt-get install python3-venv, INSTALL_PYTHON=/usr/bin/python3" >&2; exit 1;; esac
	@set -e; src=$$(mktemp -d); trap 'rm -rf "$$src"' EXIT; \
	tar --exclude=__pycache__ -cf - pyproject.toml README.md applikant | tar -xf - -C "$$src"; \
	{ echo '"""Paths given to make install (written by the Makefile; see installpaths.py)."""'; \
	  echo 'PREFIX = "$(PREFIX)"'; echo 'SYSCONFDIR = "$(SYSCONFDIR)"'; \
	  echo 'CONFIG = "$(SYSCONFDIR)/applikant.toml"'; echo 'DATA_DIR = "$(DATADIR)"'; \
	  echo 'SERVICE_USER = "$(SERVICE_USER)"'; echo 'UNITDIR = "$(UNITDIR)"'; \
	} > "$$src/applikant/_paths.py"; \
	$(INSTALL_PYTHON) -m venv $(DESTDIR)$(PREFIX); \
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q --upgrade pip; \
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q --upgrade "$$src"
	@if [ -n "$(DESTDIR)" ]; then \
	  grep -rlI --null "$(DESTDIR)$(PREFIX)" $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/pyvenv.cfg \
	    | xargs -0 -r sed -i "s|$(DESTDIR)$(PREFIX)|$(PREFIX)|g"; fi
	$(DESTDIR)$(PREFIX)/bin/python -m compileall -q $(DESTDIR)$(PREFIX)/lib
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(PREFIX)/share/doc/applikant
	@if [ "$(BINDIR)" != "$(PREFIX)/bin" ]; then for c in $(COMMANDS); do \
	  ln -sfn $(PREFIX)/bin/$$c $(DESTDIR)$(BINDIR)/$$c; done; fi
	install -m 0644 etc/applikant.toml $(DESTDIR)$(SYSCONFDIR)/applikant.toml.example
	$(call render,etc/sshd_applikant.conf,$(DESTDIR)$(SYSCONFDIR)/sshd_applikant.conf)
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/applikant/README.md
	$(MAKE) install-units

# A template with this installation's paths filled in: $(call render,SRC,DEST).
render = sed -e "s|@PREFIX@|$(PREFIX)|g" -e "s|@CONFIG@|$(SYSCONFDIR)/applikant.toml|g" \
	-e "s|@CONFIG_DIR@|$(SYSCONFDIR)|g" \
	-e "s|@DATADIR@|$(DATADIR)|g" -e "s|@USER@|$(SERVICE_USER)|g" \
	-e "s|^@STATE_DIRECTORY@$$|$(if $(STATE_DIRECTORY),StateDirectory=$(STATE_DIRECTORY)\nStateDirectoryMode=0700,\# DATADIR is outside /var/lib: \`applikant init\` makes it)|" \
	$(1) > $(2) && chmod 0644 $(2)

# systemd units with this installation's paths filled in.
install-units:
	install -d $(DESTDIR)$(UNITDIR)
	@for unit in systemd/*.service systemd/*.target; do \
	  $(call render,$$unit,$(DESTDIR)$(UNITDIR)/$$(basename $$unit)); done

# Everything `make run` and `make venv` made: the venv, make run's state (var/)
# and its builds' work dirs (var-builds/), bytecode, tool caches.
clean:
	rm -rf $(VENV) var var-builds .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find applikant bench harness tests -name __pycache__ -type d -prune -exec rm -rf {} +
