# Applikant: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= /opt/applikant
DESTDIR ?=
# Debian packages the tests drive for real (installed when missing and we are root).
DEB_PACKAGES := git openssh-server openssh-client iproute2 chromium

.PHONY: venv deps compile run test bench clean

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

test: venv deps compile
	$(PY) -m pytest -q

bench: venv compile
	$(PY) -m bench.ephemeral
	$(PY) -m bench.dist --tls

clean:
	rm -rf $(VENV) var .pytest_cache
