"""The suite's options: one table, each with a command-line flag, an ini key and an env var.

Precedence: command line, then environment, then ini file, then default.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance import workloads
from gpu_conformance.device_plugin import PLUGIN_MODES
from gpu_conformance.errors import UsageError
from gpu_conformance.timeouts import Timeouts, parse_overrides

GROUP = "gpu-conformance"
BACKEND_NAMES = ("kwok", "attach", "aks", "kind")
PYTEST_KIND_DEFAULT_NAME = "pytest-kind"


@dataclass(frozen=True)
class Opt:
    flag: str
    dest: str
    help: str
    default: Any = None
    kind: str = "str"  # str | int | float | bool | list

    @property
    def ini(self) -> str:
        return self.dest

    @property
    def env(self) -> str:
        return "GPU_CONFORMANCE_" + self.flag.lstrip("-").upper().replace("-", "_")


OPTIONS: tuple[Opt, ...] = (
    Opt("--backend", "gpu_backend", "cluster backend: kwok (offline, default), attach, aks, kind",
        "kwok"),
    Opt("--kube-context", "gpu_kube_context", "kubeconfig context for --backend attach"),
    Opt("--gpu-nodes", "gpu_nodes", "simulated GPU nodes (kwok, kind)", 2, "int"),
    Opt("--gpus-per-node", "gpus_per_node", "nvidia.com/gpu per simulated GPU node", 1, "int"),
    Opt("--gpu-product", "gpu_product",
        "simulated GPU: device name, GFD product label or Azure VM size (kwok, kind)"),
    Opt("--taint-gpu-nodes", "gpu_taint_nodes",
        "taint simulated GPU nodes sku=gpu:NoSchedule as AKS GPU pools are", False, "bool"),
    Opt("--plugin", "gpu_plugin",
        "device plugin: auto (use an existing NVIDIA device plugin DaemonSet, else install one), "
        "install, existing", "auto"),
    Opt("--plugin-manifest", "gpu_plugin_manifest",
        "what --plugin installs: current (nvcr.io v0.18, tolerates GPU taints), seed (the "
        "guide's DaemonSet as written) or a path", "current"),
    Opt("--workload", "gpu_workload",
        f"workload profile(s), comma-separated, or 'all' ({', '.join(workloads.PROFILES)})",
        workloads.DEFAULT_PROFILE),
    Opt("--expect-gpu", "gpu_expect",
        "regular expression the device line must match (default: from the node's "
        "nvidia.com/gpu.product label or VM size, else Tesla|NVIDIA)"),
    Opt("--min-accuracy", "gpu_min_accuracy",
        "the last accuracy a training workload logs must reach (default: the profile's)",
        None, "float"),
    Opt("--gpu-timeout", "gpu_timeouts",
        "override a named timeout, NAME=SECONDS (repeatable); see README for names", [], "list"),
)

SHARED_WITH_PYTEST_KIND = (
    ("--kubeconfig", {"default": None, "help": "kubeconfig for --backend attach"}),
    ("--cluster-name", {"default": PYTEST_KIND_DEFAULT_NAME,
                        "help": "cluster name (kwok default: gpu-conformance-<run id>)"}),
    ("--keep-cluster", {"action": "store_true", "help": "keep the provisioned cluster"}),
)
BACKEND_OPTION_MODULES = ("gpu_conformance.backends.aks", "gpu_conformance.backends.kind")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "GPU conformance (see README)")
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.dest, "help": f"{opt.help} [ini {opt.ini}, env {opt.env}]"}
        if opt.kind == "bool":
            kwargs.update(action="store_true", default=None)
        elif opt.kind == "list":
            kwargs.update(action="append", default=None)
        else:
            kwargs.update(default=None)
        group.addoption(opt.flag, **kwargs)
        if opt.kind == "list":
            parser.addini(opt.ini, opt.help, type="linelist", default=[])
        else:
            parser.addini(opt.ini, opt.help, type="string", default="")
    # pytest-kind, when installed, defines these (it may load before or after this plugin):
    # reuse its options, and define them only where it is absent
    if importlib.util.find_spec("pytest_kind") is None:
        for flag, kwargs in SHARED_WITH_PYTEST_KIND:
            with contextlib.suppress(ValueError):
                group.addoption(flag, **kwargs)
    for module_name in BACKEND_OPTION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        module.add_options(group)
        if hasattr(module, "add_ini"):
            module.add_ini(parser)


def _raw(config: pytest.Config, opt: Opt) -> Any:
    value = config.getoption(opt.dest, default=None)
    if value not in (None, []):
        return value
    env = os.environ.get(opt.env)
    if env not in (None, ""):
        return env.split(",") if opt.kind == "list" else env
    ini = config.getini(opt.ini)
    if ini not in (None, "", []):
        return ini
    return opt.default


def _convert(opt: Opt, value: Any) -> Any:
    if value is None:
        return None
    try:
        if opt.kind == "int":
            return int(value)
        if opt.kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{opt.flag} expects a {'whole ' if opt.kind == 'int' else ''}number, "
                         f"got {value!r}") from None
    if opt.kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return value


@dataclass(frozen=True)
class Settings:
    backend: str
    kubeconfig: Path | None
    kube_context: str | None
    cluster_name: str | None
    keep_cluster: bool
    gpu_nodes: int
    gpus_per_node: int
    gpu_product: str | None
    taint_gpu_nodes: bool
    plugin_mode: str
    plugin_manifest: str
    workloads: tuple[str, ...]
    expect_gpu: str | None
    min_accuracy: float | None
    timeouts: Timeouts

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        v = {opt.dest: _convert(opt, _raw(config, opt)) for opt in OPTIONS}
        backend = v["gpu_backend"]
        if backend not in BACKEND_NAMES:
            raise UsageError(f"--backend {backend!r} is not one of {', '.join(BACKEND_NAMES)}")
        if v["gpu_plugin"] not in PLUGIN_MODES:
            raise UsageError(f"--plugin {v['gpu_plugin']!r} is not one of {', '.join(PLUGIN_MODES)}")
        names = [n.strip() for n in str(v["gpu_workload"]).split(",") if n.strip()]
        chosen = tuple(workloads.PROFILES) if names == ["all"] else tuple(names)
        for name in chosen:
            workloads.get_profile(name)
        if not chosen:
            raise UsageError("--workload names no profile")
        for flag, value, low in (("--gpu-nodes", v["gpu_nodes"], 0),
                                 ("--gpus-per-node", v["gpus_per_node"], 1)):
            if value < low:
                raise UsageError(f"{flag} must be at least {low}, got {value}")
        if v["gpu_min_accuracy"] is not None and not 0 <= v["gpu_min_accuracy"] <= 1:
            raise UsageError(f"--min-accuracy must be between 0 and 1, got {v['gpu_min_accuracy']}")
        if v["gpu_expect"]:
            import re

            try:
                re.compile(v["gpu_expect"])
            except re.error as exc:
                raise UsageError(f"--expect-gpu {v['gpu_expect']!r} is not a valid regular "
                                 f"expression: {exc}") from None
        kubeconfig = config.getoption("kubeconfig", default=None)
        if kubeconfig and not Path(kubeconfig).expanduser().is_file():
            raise UsageError(f"--kubeconfig {kubeconfig} does not exist")
        name = config.getoption("cluster_name", default=None)
        return cls(
            backend=backend,
            kubeconfig=Path(kubeconfig).expanduser() if kubeconfig else None,
            kube_context=v["gpu_kube_context"],
            cluster_name=None if name in (None, PYTEST_KIND_DEFAULT_NAME) else str(name),
            keep_cluster=bool(config.getoption("keep_cluster", default=False)),
            gpu_nodes=v["gpu_nodes"], gpus_per_node=v["gpus_per_node"],
            gpu_product=v["gpu_product"], taint_gpu_nodes=bool(v["gpu_taint_nodes"]),
            plugin_mode=v["gpu_plugin"], plugin_manifest=v["gpu_plugin_manifest"],
            workloads=chosen, expect_gpu=v["gpu_expect"], min_accuracy=v["gpu_min_accuracy"],
            timeouts=Timeouts(parse_overrides(list(v["gpu_timeouts"] or []))),
        )
