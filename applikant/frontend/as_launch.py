"""``python -S .../as_launch.py ARGS``: ``as`` without the ``site`` module (the
default forced command, see daemon.default_as_command). ``site`` reads the venv's
.pth files and runs sitecustomize, ~1-2 ms of CPU on every fetch and push, and
``as`` needs nothing it adds: only this package and the standard library. Kept
tiny: a script is compiled on every run, never cached."""

import sys

sys.path[0] = __file__.rpartition("/applikant/")[0]  # (not this directory)
from applikant.frontend.as_cmd import main  # noqa: E402

main()
