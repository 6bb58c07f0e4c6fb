"""The version of this installation, as `applikant --version`, `applikant status`
and `make run` print it: the installed distribution's (pyproject.toml's), which
`make install` and the editable install of a checkout both record."""

from __future__ import annotations

import functools

__all__ = ["version"]


@functools.cache
def version() -> str:
    """`0.1.0`, or `unknown` when the package was not installed (a bare checkout
    on sys.path)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("applikant")
    except PackageNotFoundError:
        return "unknown"
