"""ab, the builder: runs the `.applikant/build.sh` of one pushed commit.

Public API (the rest of the package is implementation):

- `run_build(spec, on_line, *, settings, cancel) -> BuildResult`: one build,
  start to end (runner.py).
- `BuildSpec`, `BuildResult`, `Build`, `BuildStatus`: the data (models.py);
  `Build` is what am's store persists.
- `BuilderSettings`: the `[builder]` config table (settings.py).
"""

from .models import FINAL_STATUSES, Build, BuildResult, BuildSpec, BuildStatus
from .runner import run_build
from .settings import BuilderSettings, DockerSettings, Limits

__all__ = [
    "FINAL_STATUSES",
    "Build",
    "BuildResult",
    "BuildSpec",
    "BuildStatus",
    "BuilderSettings",
    "DockerSettings",
    "Limits",
    "run_build",
]
