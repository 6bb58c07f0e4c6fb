"""The paths this installation was made with, for defaults that must follow them.

`make install` writes `applikant/_paths.py` into the copy of the package it
installs (never into the checkout): the config file, the data directory and the
service user it was given, so that `applikant init`, the CLIs and `doctor` use
them without `APPLIKANT_CONFIG` or `--data-dir`. A development checkout has no
such module and gets the documented defaults. Stdlib only: `as` and `ah` import it.
"""

from __future__ import annotations

__all__ = ["CONFIG", "DATA_DIR", "INSTALLED", "PREFIX", "SERVICE_USER", "SYSCONFDIR", "UNITDIR"]

try:  # not importlib.import_module: importing importlib costs `as` 0.4 ms per fetch
    from . import _paths as _given  # type: ignore[attr-defined]
except ImportError:
    _given = None

#: True when running from a `make install` (the module below exists).
INSTALLED: bool = _given is not None
SYSCONFDIR: str = getattr(_given, "SYSCONFDIR", "/etc/applikant")
#: The config file read when APPLIKANT_CONFIG is not set.
CONFIG: str = getattr(_given, "CONFIG", "/etc/applikant/applikant.toml")
#: Where `applikant init` puts the state unless told otherwise.
DATA_DIR: str = getattr(_given, "DATA_DIR", "/var/lib/applikant")
#: The account the daemons run as (None in a development checkout).
SERVICE_USER: str | None = getattr(_given, "SERVICE_USER", None)
PREFIX: str | None = getattr(_given, "PREFIX", None)
UNITDIR: str | None = getattr(_given, "UNITDIR", None)
