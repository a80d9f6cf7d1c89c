"""The offline cluster's programs: pinned versions, built from Go modules, cached by version.

Lookup order per program: an explicit environment variable
(``GPU_CONFORMANCE_<PROGRAM>``, e.g. ``GPU_CONFORMANCE_KUBE_APISERVER``), the cache
(``$GPU_CONFORMANCE_CACHE`` or ``~/.cache/gpu-conformance``), a program on PATH that
reports the pinned version, and finally a build from the pinned modules in ``tools/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpu_conformance.errors import ToolchainError
from gpu_conformance.log import Log
from gpu_conformance.paths import tools_dir
from gpu_conformance.timeouts import DEFAULTS

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.14"
KWOK_VERSION = "v0.8.0"

# CI and cron jobs often run with a short PATH: Go is also looked for where it installs itself
GO_LOCATIONS = ["/usr/local/go/bin/go", "/usr/lib/go/bin/go"]
BUILD_TIMEOUT = DEFAULTS["go-build"].seconds
#: the pinned Go tools modules (a checkout's tools/, or their copy in the installed package)
TOOLS_DIR = tools_dir()


@dataclass(frozen=True)
class Family:
    """Programs built from one tools module, cached together under one versioned folder."""

    name: str
    version: str
    module_dir: str
    programs: dict[str, str]

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.version}"

    def ldflags(self) -> str:
        flags = ["-s", "-w"]
        if self.name == "kubernetes":
            major, minor = self.version.lstrip("v").split(".")[:2]
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                flags += [
                    f"-X {pkg}.gitVersion={self.version}",
                    f"-X {pkg}.gitMajor={major}",
                    f"-X {pkg}.gitMinor={minor}",
                    f"-X {pkg}.gitTreeState=clean",
                ]
        return " ".join(flags)


FAMILIES: tuple[Family, ...] = (
    Family("kubernetes", KUBERNETES_VERSION, "kube", {
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    }),
    Family("etcd", ETCD_VERSION, "etcd", {"etcd": "go.etcd.io/etcd/server/v3"}),
    Family("kwok", KWOK_VERSION, "kwok", {
        "kwok": "sigs.k8s.io/kwok/cmd/kwok",
        "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl",
    }),
)

PROGRAMS: dict[str, Family] = {p: f for f in FAMILIES for p in f.programs}


def cache_dir() -> Path:
    return Path(os.environ.get("GPU_CONFORMANCE_CACHE") or Path.home() / ".cache" / "gpu-conformance")


def env_var(program: str) -> str:
    return "GPU_CONFORMANCE_" + program.upper().replace("-", "_")


def _version_output(path: Path) -> str:
    try:
        run = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                             timeout=DEFAULTS["program-version"].seconds)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return run.stdout + run.stderr


def _on_path_with_version(program: str, version: str) -> Path | None:
    found = shutil.which(program)
    if not found:
        return None
    if program == "kubectl":
        return None  # kubectl --version is not a flag; the cached, pinned kubectl is always used
    text = _version_output(Path(found))
    return Path(found) if re.search(rf"\b{re.escape(version.lstrip('v'))}\b", text) else None


def find(program: str) -> Path | None:
    """Where ``program`` is, without building anything."""
    family = PROGRAMS[program]
    explicit = os.environ.get(env_var(program))
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainError(f"{env_var(program)}={explicit} is not an executable file")
        return path
    cached = cache_dir() / family.cache_key / program
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return _on_path_with_version(program, family.version)


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """One holder at a time on this machine (builds into the cache, cluster creation)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_lock() -> contextlib.AbstractContextManager[None]:
    return machine_lock("build")


def _go() -> str:
    candidates = [os.path.join(os.environ.get("GOROOT", ""), "bin", "go"), *GO_LOCATIONS]
    go = shutil.which("go") or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if not go:
        raise ToolchainError(
            "Go is not installed, and the offline cluster's programs are built from Go modules",
            hint="install Go >= 1.26, or point GPU_CONFORMANCE_<PROGRAM> variables at binaries",
        )
    return go


def build_family(family: Family, log: Log) -> Path:
    """Build every program of ``family`` into its cache folder (atomically) and return it."""
    target = cache_dir() / family.cache_key
    module = TOOLS_DIR / family.module_dir
    if not (module / "go.mod").is_file():
        raise ToolchainError(f"pinned tools module {module} is missing",
                             hint="reinstall gpu-conformance, or run from a checkout")
    go = _go()
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    try:
        for program, package in family.programs.items():
            log(f"building {program} {family.version} (cold builds take minutes) ...")
            started = time.monotonic()
            try:
                run = subprocess.run(
                    [go, "build", "-trimpath", "-ldflags", family.ldflags(),
                     "-o", str(staging / program), package],
                    cwd=module, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise ToolchainError(f"go build of {program} did not finish within "
                                     f"{BUILD_TIMEOUT}s") from None
            if run.returncode != 0:
                tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ToolchainError(f"go build of {program} failed: {tail[0]}")
            log(f"built {program} in {time.monotonic() - started:.0f}s")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure(log: Log | None = None) -> dict[str, Path]:
    """Every program's path, building the missing families (under a lock) first."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    paths: dict[str, Path] = {}
    missing: list[Family] = []
    for family in FAMILIES:
        found = {p: find(p) for p in family.programs}
        if all(found.values()):
            paths.update({p: v for p, v in found.items() if v})
        else:
            missing.append(family)
    if missing:
        with _build_lock():
            for family in missing:
                cached = cache_dir() / family.cache_key
                if not all((cached / p).is_file() for p in family.programs):
                    build_family(family, say)
                paths.update({p: cached / p for p in family.programs})
    return paths
