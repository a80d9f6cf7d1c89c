"""The real node's programs: pinned Go modules under tools/, built into the shared cache.

Like :mod:`gpu_conformance.binaries` (one tools module per program family, one cache folder
``<family>-<version>`` per build), with what node programs need on top: cgo for runc and
NVIDIA's programs, build tags, version stamps, and a content hash as the version of our own
programs (tools/nodekit, tools/fakegpu), so an edit rebuilds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from gpu_conformance import binaries
from gpu_conformance.errors import ToolchainError

Log = Callable[[str], None]

KUBELET_VERSION = binaries.KUBERNETES_VERSION
CONTAINERD_VERSION = "v2.4.2"
RUNC_VERSION = "v1.5.3"
CNI_PLUGINS_VERSION = "v1.9.1"
NVIDIA_DEVICE_PLUGIN_VERSION = "v0.18.0"
NVIDIA_TOOLKIT_VERSION = "v1.20.2"


def _kube_stamps(version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    return flags


@dataclass(frozen=True)
class NodeFamily:
    """Programs built from one tools module and cached together."""

    name: str
    #: a release tag, or None for our own modules: then a hash of their sources
    release: str | None
    module_dir: str
    programs: dict[str, str]
    cgo: bool = False
    #: link a cgo program statically (static-pie), so it runs on any glibc
    static: bool = False
    tags: tuple[str, ...] = ()
    stamps: tuple[str, ...] = ()
    #: cgo libraries that add a build tag when present (tag -> pkg-config name)
    optional_tags: dict[str, str] = field(default_factory=dict)
    #: tags for one program only (containerd's shim drops its gRPC server)
    program_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def module(self) -> Path:
        return binaries.TOOLS_DIR / self.module_dir

    @property
    def version(self) -> str:
        return self.release or "src-" + source_hash(self.module)

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.version}"

    def build_tags(self) -> list[str]:
        tags = list(self.tags)
        for tag, library in self.optional_tags.items():
            if shutil.which("pkg-config") and subprocess.run(
                ["pkg-config", "--exists", library], capture_output=True, check=False
            ).returncode == 0:
                tags.append(tag)
        return tags

    def ldflags(self) -> str:
        flags = ["-s", "-w", *self.stamps]
        if self.cgo and self.static:
            flags += ["-linkmode external", "-extldflags -static-pie"]
        return " ".join(flags)


@cache
def source_hash(module: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(module.rglob("*")):
        if path.is_file() and path.suffix in {".go", ".mod", ".sum"}:
            digest.update(str(path.relative_to(module)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


FAMILIES: tuple[NodeFamily, ...] = (
    NodeFamily("kubelet", KUBELET_VERSION, "node-kubelet",
               {"kubelet": "k8s.io/kubernetes/cmd/kubelet"},
               stamps=tuple(_kube_stamps(KUBELET_VERSION))),
    NodeFamily("containerd", CONTAINERD_VERSION, "containerd", {
        "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
        "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
        "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
    }, tags=("urfave_cli_no_docs", "osusergo", "netgo", "static_build"),
        program_tags={"containerd-shim-runc-v2": ("no_grpc",)}, stamps=(
        f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
        "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2",
    )),
    # runc needs cgo (nsexec); static-pie with libseccomp.a when libseccomp-dev is installed
    NodeFamily("runc", RUNC_VERSION, "runc", {"runc": "github.com/opencontainers/runc"},
               cgo=True, static=True, tags=("urfave_cli_no_docs", "netgo", "osusergo"),
               optional_tags={"seccomp": "libseccomp"}),
    NodeFamily("cni-plugins", CNI_PLUGINS_VERSION, "cni", {
        name: f"github.com/containernetworking/plugins/plugins/{path}"
        for name, path in (("bridge", "main/bridge"), ("host-local", "ipam/host-local"),
                           ("loopback", "main/loopback"), ("ptp", "main/ptp"),
                           ("portmap", "meta/portmap"))
    }, stamps=(
        "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion="
        + CNI_PLUGINS_VERSION,
    )),
    # go-nvml dlopens libnvidia-ml.so.1: dynamic glibc (built on an older glibc than the host's)
    NodeFamily("nvidia-device-plugin", NVIDIA_DEVICE_PLUGIN_VERSION, "nvidia-device-plugin", {
        "nvidia-device-plugin": "github.com/NVIDIA/k8s-device-plugin/cmd/nvidia-device-plugin",
    }, cgo=True, stamps=(
        f"-X github.com/NVIDIA/k8s-device-plugin/internal/info.version={NVIDIA_DEVICE_PLUGIN_VERSION}",
    )),
    NodeFamily("nvidia-container-toolkit", NVIDIA_TOOLKIT_VERSION, "nvidia-ctk", {
        "nvidia-ctk": "github.com/NVIDIA/nvidia-container-toolkit/cmd/nvidia-ctk",
        "nvidia-cdi-hook": "github.com/NVIDIA/nvidia-container-toolkit/cmd/nvidia-cdi-hook",
        "nvidia-container-runtime":
            "github.com/NVIDIA/nvidia-container-toolkit/cmd/nvidia-container-runtime",
    }, cgo=True, stamps=(
        f"-X github.com/NVIDIA/nvidia-container-toolkit/internal/info.version={NVIDIA_TOOLKIT_VERSION}",
    )),
    # the GPU host's copy of the five Kubernetes programs: one binary, 27 MB after xz -6
    # instead of 79 MB for the five (they share most of their code)
    NodeFamily("kube-multicall", KUBELET_VERSION, "kube-multicall", {"kube": "."},
               stamps=tuple(_kube_stamps(KUBELET_VERSION))),
    NodeFamily("nodekit", None, "nodekit", {
        "pause": "./cmd/pause", "standin": "./cmd/standin", "pki": "./cmd/pki",
    }),
    NodeFamily("fakegpu", None, "fakegpu", {"fakegpu-device-plugin": "."}),
)

#: what a node needs on a host without a GPU, and on top of that on a GPU host
FAKE_GPU_FAMILIES = ("kubelet", "containerd", "runc", "cni-plugins", "nodekit", "fakegpu")
NVIDIA_FAMILIES = (*FAKE_GPU_FAMILIES, "nvidia-device-plugin", "nvidia-container-toolkit")
#: the programs kube-multicall stands for (a symlink of each name to ``kube``)
MULTICALL_NAMES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
BY_NAME: dict[str, NodeFamily] = {f.name: f for f in FAMILIES}
PROGRAMS: dict[str, NodeFamily] = {p: f for f in FAMILIES for p in f.programs}
# kubelet alone is ~10 min cold on 2 cores
BUILD_TIMEOUT = 3600


def env_var(program: str) -> str:
    return binaries.env_var(program)


def find(program: str) -> Path | None:
    """An explicit ``GPU_CONFORMANCE_<PROGRAM>`` binary, else the cached build, else None."""
    explicit = os.environ.get(env_var(program))
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainError(f"{env_var(program)}={explicit} is not an executable file")
        return path
    cached = binaries.cache_dir() / PROGRAMS[program].cache_key / program
    return cached if cached.is_file() and os.access(cached, os.X_OK) else None


def build_family(family: NodeFamily, log: Log) -> Path:
    """Build every program of ``family`` into its cache folder (atomically); return it."""
    target = binaries.cache_dir() / family.cache_key
    if not (family.module / "go.mod").is_file():
        raise ToolchainError(f"pinned tools module {family.module} is missing; run from a checkout")
    go = binaries._go()
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "1" if family.cgo else "0", "GOTOOLCHAIN": "local",
           "GOFLAGS": "-mod=mod"}
    tags = family.build_tags()
    try:
        for program, package in family.programs.items():
            log(f"building {program} {family.version} (tags: {' '.join(tags) or 'none'}) ...")
            started = time.monotonic()
            command = [go, "build", "-trimpath"]
            if family.cgo and family.static:
                command.append("-buildmode=pie")
            all_tags = [*tags, *family.program_tags.get(program, ())]
            command += ["-tags", ",".join(all_tags), "-ldflags", family.ldflags(),
                        "-o", str(staging / program), package]
            try:
                run = subprocess.run(command, cwd=family.module, env=env, capture_output=True,
                                     text=True, timeout=BUILD_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                raise ToolchainError(f"go build of {program} did not finish within "
                                     f"{BUILD_TIMEOUT}s") from None
            if run.returncode != 0:
                lines = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
                raise ToolchainError(f"go build of {program} failed: {lines[-1]}")
            log(f"built {program} in {time.monotonic() - started:.0f}s "
                f"({(staging / program).stat().st_size / 1e6:.1f} MB)")
        (staging / "BUILD-INFO").write_text(f"{family.name} {family.version} tags={','.join(tags)}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure(families: tuple[str, ...] = FAKE_GPU_FAMILIES, log: Log | None = None) -> dict[str, Path]:
    """Every program of ``families`` (building what is missing, under the build lock)."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    paths: dict[str, Path] = {}
    missing: list[NodeFamily] = []
    for name in families:
        family = BY_NAME[name]
        found = {p: find(p) for p in family.programs}
        if all(found.values()):
            paths.update({p: v for p, v in found.items() if v})
        else:
            missing.append(family)
    if missing:
        with binaries._build_lock():
            for family in missing:
                cached = binaries.cache_dir() / family.cache_key
                if not all((cached / p).is_file() for p in family.programs):
                    build_family(family, say)
                paths.update({p: cached / p for p in family.programs})
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m gpu_conformance.realnode.programs [FAMILY...]``: build (or find) them."""
    names = tuple(argv if argv is not None else sys.argv[1:]) or FAKE_GPU_FAMILIES
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown families: {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    for program, path in sorted(ensure(names).items()):
        print(f"{program}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
