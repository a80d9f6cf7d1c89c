"""The one options table: core options and what each backend contributes.

Every option has a command-line flag, an ini key and an environment variable; precedence is
command line, then environment, then ini file, then default. Values are resolved once, by
``resolve``, which also records where each came from, so an error names the flag, the
environment variable or the ini key the user actually set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpu_conformance.errors import UsageError
from gpu_conformance.sharing import SIMULATED_MODES

GROUP = "gpu-conformance"
BACKEND_NAMES = ("kwok", "attach", "aks", "kind")
PLUGIN_MODES = ("auto", "install", "existing")
#: pytest-kind's default --cluster-name: means "not given" to every backend
PYTEST_KIND_DEFAULT_NAME = "pytest-kind"
ENV_PREFIX = "GPU_CONFORMANCE_"


@dataclass(frozen=True)
class Opt:
    flag: str
    dest: str
    help: str
    default: Any = None
    #: str | int | float | bool | list
    kind: str = "str"
    choices: tuple[str, ...] = ()
    #: further environment variables read after the option's own (e.g. AZURE_SUBSCRIPTION_ID)
    extra_env: tuple[str, ...] = ()
    #: the backend that reads it; None: every run
    backend: str | None = None
    #: pytest-kind defines the flag when it is installed; ours only where it is absent
    pytest_kind: bool = False
    ini_key: str | None = None

    @property
    def ini(self) -> str:
        return self.ini_key or self.dest

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").upper().replace("-", "_")


def _aks(key: str, help: str, default: Any = None, kind: str = "str",
         choices: tuple[str, ...] = (), extra_env: tuple[str, ...] = ()) -> Opt:
    return Opt(f"--aks-{key}", "aks_" + key.replace("-", "_"), help, default, kind, choices,
               extra_env, backend="aks")


CORE: tuple[Opt, ...] = (
    Opt("--backend", "gpu_backend", "cluster backend: kwok (offline, default), attach, aks, kind",
        "kwok", choices=BACKEND_NAMES),
    Opt("--kubeconfig", "kubeconfig", "kubeconfig of the cluster to attach to (attach) or to "
        "write (kind)", pytest_kind=True, ini_key="gpu_kubeconfig"),
    Opt("--kube-context", "gpu_kube_context", "kubeconfig context for --backend attach"),
    Opt("--cluster-name", "cluster_name", "name of the cluster to create or reuse (kwok "
        "default: gpu-conformance-<pid>, kept: gpu-conformance; kind: gpu-conformance)",
        pytest_kind=True, ini_key="gpu_cluster_name"),
    Opt("--keep-cluster", "keep_cluster", "keep the cluster the run provisioned", False, "bool",
        pytest_kind=True, ini_key="gpu_keep_cluster"),
    Opt("--run-id", "gpu_run_id", "id of this run: names its namespaces and tags its Azure "
        "resources (default: MMDDHHMM-<random>)"),
    Opt("--gpu-nodes", "gpu_nodes", "simulated GPU nodes (kwok, kind)", 2, "int"),
    Opt("--gpus-per-node", "gpus_per_node", "nvidia.com/gpu per simulated GPU node", 1, "int"),
    Opt("--gpu-product", "gpu_product",
        "simulated GPU: device name, GFD product label or Azure VM size (kwok, kind)"),
    Opt("--taint-gpu-nodes", "gpu_taint_nodes",
        "taint simulated GPU nodes sku=gpu:NoSchedule as AKS GPU pools are", False, "bool"),
    Opt("--plugin", "gpu_plugin",
        "device plugin: auto (use an existing NVIDIA device plugin DaemonSet, else install one), "
        "install, existing", "auto", choices=PLUGIN_MODES),
    Opt("--plugin-manifest", "gpu_plugin_manifest",
        "what --plugin installs: current (nvcr.io v0.18, tolerates GPU taints), seed (the "
        "guide's DaemonSet as written) or a path", "current"),
    Opt("--workload", "gpu_workload",
        "workload profile(s), comma-separated, or 'all' (see docs/workloads.md)", "tf-mnist"),
    Opt("--gpus-per-job", "gpu_gpus_per_job",
        "nvidia.com/gpu each workload Job asks for (all-GPU profiles such as nccl-allreduce ask "
        "for every GPU of their node)", 1, "int"),
    Opt("--workload-nodes", "gpu_workload_nodes",
        "GPU nodes each workload profile runs on: all, one, or a number N (the first N by name)",
        "all"),
    Opt("--busy", "gpu_busy", "a GPU node whose GPUs are all held by other pods: fail its "
        "workload checks, or skip them (never a silent pass)", "fail", choices=("fail", "skip")),
    Opt("--expect-gpu", "gpu_expect",
        "regular expression the device line must match (default: from the node's "
        "nvidia.com/gpu.product label or VM size, else Tesla|NVIDIA)"),
    Opt("--min-accuracy", "gpu_min_accuracy",
        "the last accuracy a training workload logs must reach (default: the profile's)",
        None, "float"),
    Opt("--gpu-gate", "gpu_gates",
        "override a health or performance gate, NAME=VALUE or NAME=off (repeatable): h2d, d2h, "
        "p2p, nccl-busbw, nccl-bytes, nccl-ranks, dram-ecc, sram-correctable, "
        "sram-uncorrectable, remapped-uncorrectable, retired-pages (docs/health.md)", [], "list"),
    Opt("--gpu-timeout", "gpu_timeouts",
        "override a named timeout, NAME=SECONDS (repeatable); see README for names", [], "list"),
    Opt("--gpu-report-dir", "gpu_report_dir", "where summary.md, summary.json, summary.html and "
        "artifacts/ are written", "reports"),
)

AKS: tuple[Opt, ...] = (
    _aks("subscription", "Azure subscription id", extra_env=("AZURE_SUBSCRIPTION_ID",)),
    _aks("location", "Azure region for new resources", "eastus"),
    _aks("resource-group", "resource group; created (and later deleted) if absent "
         "[gpuconf-RUNID]"),
    _aks("cluster-name", "AKS cluster name [gpuconf-RUNID]"),
    _aks("kubernetes-version", "Kubernetes version [AKS default]"),
    _aks("vm-size", "VM size of the GPU node pool", "Standard_NC4as_T4_v3"),
    _aks("node-count", "nodes in the GPU node pool", 1, "int"),
    _aks("system-vm-size", "VM size of the system pool", "Standard_D2s_v5"),
    _aks("gpu-driver", "install: AKS installs the NVIDIA driver; none: leave it to the GPU "
         "Operator", "install", choices=("install", "none")),
    _aks("mig-profile", "MIG instance profile for A100/H100/H200 sizes",
         choices=("MIG1g", "MIG2g", "MIG3g", "MIG4g", "MIG7g")),
    _aks("keep", "do not delete at the end (the expiry tag still lets the janitor delete it)",
         False, "bool"),
    _aks("ttl", "time to live written to the expiry tag, e.g. 90m, 6h, 1d (at most 7d)", "6h"),
    _aks("existing", "attach to the existing cluster --aks-resource-group/--aks-cluster-name: "
         "fetch credentials only, delete nothing", False, "bool"),
    _aks("dry-run", "print the planned Azure operations and request bodies as JSON; call "
         "nothing", False, "bool"),
    _aks("creator", "creator tag [$GITHUB_ACTOR or the login name]"),
    _aks("no-sweep", "skip deleting expired resource groups of earlier runs before "
         "provisioning", False, "bool"),
)

KWOK: tuple[Opt, ...] = (
    Opt("--node", "kwok_node", "kwok: simulated GPU nodes only, or real: add a real node on this "
        "host (kubelet, containerd, runc; root; simulated GPU nodes then default to 0)",
        "simulated", choices=("simulated", "real"), backend="kwok"),
    Opt("--gpu-sharing", "kwok_gpu_sharing", "kwok: how simulated GPU nodes offer their GPUs: "
        "none (whole GPUs), mig-single, mig-mixed (an A100/H100/H200 --gpu-product) or "
        "time-slicing (4 replicas), labelled as GPU feature discovery does", "none",
        choices=SIMULATED_MODES, backend="kwok"),
    Opt("--real-gpus", "kwok_real_gpus", "kwok --node real: the real node's GPUs, fake (a test "
        "device plugin, --gpus-per-node of them) or nvidia (this host's, through CDI)", "fake",
        choices=("fake", "nvidia"), backend="kwok"),
)

KIND: tuple[Opt, ...] = (
    Opt("--kind-image", "kind_image", "kindest/node image of the kind cluster", backend="kind",
        pytest_kind=True, ini_key="gpu_kind_image"),
    Opt("--kind-bin", "kind_bin", "the kind program (default: kind on PATH)", backend="kind",
        pytest_kind=True, ini_key="gpu_kind_bin"),
    Opt("--kind-kubectl-bin", "kind_kubectl_bin", "the kubectl program pytest-kind uses",
        backend="kind", pytest_kind=True, ini_key="gpu_kind_kubectl_bin"),
    Opt("--kind-gpu-plugin-image", "kind_gpu_plugin_image",
        "image that stands in for the NVIDIA device plugin on kind", "registry.k8s.io/pause:3.10",
        backend="kind"),
    Opt("--kind-gpu-workload-image", "kind_gpu_workload_image",
        "image with sh and printf that prints the workload's reference log on kind",
        "busybox:1.36", backend="kind"),
    Opt("--kind-gpu-keeper-seconds", "kind_gpu_keeper_seconds",
        "how long a background thread keeps re-advertising the fake GPUs if a kubelet drops "
        "them (0 disables it)", 7200.0, "float", backend="kind"),
    Opt("--kind-load-image", "kind_load_images",
        "a local Docker image to load into the kind nodes before the suites run; repeatable",
        [], "list", backend="kind"),
)

OPTIONS: tuple[Opt, ...] = CORE + KWOK + AKS + KIND
BY_DEST: dict[str, Opt] = {o.dest: o for o in OPTIONS}


def pytest_kind_installed() -> bool:
    return importlib.util.find_spec("pytest_kind") is not None


def add_options(parser: Any) -> None:
    """Register every option and ini key with pytest (a ``pytest.Parser``)."""
    group = parser.getgroup(GROUP, "GPU conformance (see README)")
    skip_shared = pytest_kind_installed()
    for opt in OPTIONS:
        if opt.kind == "list":
            parser.addini(opt.ini, opt.help, type="linelist", default=[])
        else:
            parser.addini(opt.ini, opt.help, type="string", default="")
        if opt.pytest_kind and skip_shared:
            continue  # pytest-kind defines the flag itself (it may load before or after us)
        kwargs: dict[str, Any] = {"dest": opt.dest,
                                  "help": f"{opt.help} [ini {opt.ini}, env {opt.env}]"}
        if opt.kind == "bool":
            kwargs.update(action="store_true", default=None)
        elif opt.kind == "list":
            kwargs.update(action="append", default=None)
        else:
            kwargs.update(default=None)
        group.addoption(opt.flag, **kwargs)


@dataclass(frozen=True)
class Value:
    value: Any
    #: where it came from: the flag, the environment variable, "ini KEY" or "default"
    source: str


class Values:
    """Every option's resolved, converted value, and where it came from."""

    def __init__(self, values: Mapping[str, Value]) -> None:
        self._values = dict(values)

    def __getitem__(self, dest: str) -> Any:
        return self._values[dest].value

    def source(self, dest: str) -> str:
        return self._values[dest].source

    def as_dict(self) -> dict[str, Any]:
        return {dest: v.value for dest, v in self._values.items()}


Lookup = Callable[[Opt], Any]


def _given(value: Any) -> bool:
    return value not in (None, "", [])


def _convert(opt: Opt, raw: Any, source: str) -> Any:
    if raw is None:
        return None
    where = source if source != opt.flag else opt.flag
    try:
        if opt.kind == "int":
            return int(str(raw).strip())
        if opt.kind == "float":
            return float(str(raw).strip())
    except (TypeError, ValueError):
        wanted = "a whole number" if opt.kind == "int" else "a number"
        raise UsageError(f"{where} expects {wanted}, got {raw!r}") from None
    if opt.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise UsageError(f"{where} expects true or false, got {raw!r}")
    if opt.kind == "list":
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return [str(i).strip() for i in items if str(i).strip()]
    text = str(raw)
    if opt.choices:
        match = [c for c in opt.choices if c.lower() == text.strip().lower()]
        if not match:
            raise UsageError(f"{where} {text!r} is not one of {', '.join(opt.choices)}")
        return match[0]
    return text


def resolve(cli: Lookup, ini: Lookup, env: Mapping[str, str] | None = None,
            options: tuple[Opt, ...] = OPTIONS) -> Values:
    """Each option by precedence (command line, environment, ini, default), converted."""
    env = os.environ if env is None else env
    resolved: dict[str, Value] = {}
    for opt in options:
        raw, source = cli(opt), opt.flag
        if opt.dest == "cluster_name" and raw == PYTEST_KIND_DEFAULT_NAME:
            raw = None
        if not _given(raw):
            raw = None
            for name in (opt.env, *opt.extra_env):
                if env.get(name, "").strip():
                    raw, source = env[name], name
                    break
        if raw is None:
            from_ini = ini(opt)
            if _given(from_ini):
                raw, source = from_ini, f"ini {opt.ini}"
        if raw is None:
            raw, source = opt.default, "default"
        resolved[opt.dest] = Value(_convert(opt, raw, source), source)
    return Values(resolved)


def from_pytest_config(config: Any, env: Mapping[str, str] | None = None) -> Values:
    """Resolve every option from a ``pytest.Config``."""

    def cli(opt: Opt) -> Any:
        return config.getoption(opt.dest, default=None)

    def ini(opt: Opt) -> Any:
        try:
            return config.getini(opt.ini)
        except ValueError:
            return None

    return resolve(cli, ini, env)


def from_mapping(given: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Values:
    """Resolve from a plain mapping keyed by dest or flag name (``gpu_nodes``, ``gpu-nodes``)."""

    def cli(opt: Opt) -> Any:
        for key in (opt.dest, opt.flag.lstrip("-"), opt.flag):
            if key in given:
                return given[key]
        return None

    return resolve(cli, lambda _opt: None, {} if env is None else env)
