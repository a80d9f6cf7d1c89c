"""kind needs a container engine: find out, in one line, whether one answers."""

from __future__ import annotations

import os
import shutil
import subprocess

from gpu_conformance.errors import ClusterError, one_line
from gpu_conformance.timeouts import DEFAULTS


def require_container_engine(
    program: str | None = None, *, timeout_s: float = DEFAULTS["docker-info"].seconds
) -> str:
    """Fail with one line unless a container engine answers; return its server version.

    kind runs nodes as containers of the engine `docker` (or KIND_EXPERIMENTAL_PROVIDER) talks
    to, so a docker CLI without a reachable engine is no better than none.
    """
    program = program or os.environ.get("KIND_EXPERIMENTAL_PROVIDER") or "docker"
    hint = "start a Docker engine, or use --backend kwok for the offline cluster"
    found = shutil.which(program)
    if found is None:
        raise ClusterError(f"kind needs a Docker engine: no `{program}` program on PATH",
                           hint=hint)
    try:
        run = subprocess.run([found, "info", "--format", "{{.ServerVersion}}"],
                             capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"kind needs a Docker engine: `{program} info` did not answer within "
                           f"{timeout_s:g}s", hint=hint) from None
    except OSError as error:
        raise ClusterError(f"kind needs a Docker engine: could not run `{program} info`: {error}",
                           hint=hint) from None
    if run.returncode != 0:
        detail = (one_line(Exception(run.stderr)) if run.stderr.strip()
                  else one_line(Exception(run.stdout)) if run.stdout.strip()
                  else f"exit {run.returncode}")
        raise ClusterError(f"kind needs a Docker engine: `{program} info` failed: {detail}",
                           hint=hint)
    return run.stdout.strip() or "unknown"
