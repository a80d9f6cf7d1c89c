"""AKS options: one table drives the pytest options, ini keys, environment variables and CLI.

Precedence: command line, then environment (``GPU_CONFORMANCE_AKS_*``), then ini, then default.
The environment wins over ini so a CI job can redirect a checked-in configuration.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gpu_conformance.errors import UsageError
from gpu_conformance.gpus import DEFAULT_VM_SIZE, sku_for_vm_size
from gpu_conformance.timeouts import Timeout, parse_overrides

Kind = Literal["str", "int", "bool", "duration"]
ENV_PREFIX = "GPU_CONFORMANCE_AKS_"
DEFAULT_LOCATION = "eastus"
DEFAULT_SYSTEM_VM_SIZE = "Standard_D2s_v5"
DEFAULT_TTL = "6h"
MAX_TTL = timedelta(days=7)
MIG_PROFILES = ("MIG1g", "MIG2g", "MIG3g", "MIG4g", "MIG7g")
MIG_CAPABLE = ("A100", "H100", "H200")
GPU_DRIVERS = {"install": "Install", "none": "None"}


@dataclass(frozen=True)
class OptionSpec:
    key: str
    kind: Kind
    default: str | None
    help: str
    extra_env: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return f"--aks-{self.key}"

    @property
    def dest(self) -> str:
        return "aks_" + self.key.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace("-", "_").upper()


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("subscription", "str", None, "Azure subscription id", ("AZURE_SUBSCRIPTION_ID",)),
    OptionSpec("location", "str", DEFAULT_LOCATION, "Azure region for new resources"),
    OptionSpec("resource-group", "str", None,
               "resource group; created (and later deleted) if absent [gpuconf-RUNID]"),
    OptionSpec("cluster-name", "str", None, "AKS cluster name [gpuconf-RUNID]"),
    OptionSpec("kubernetes-version", "str", None, "Kubernetes version [AKS default]"),
    OptionSpec("vm-size", "str", DEFAULT_VM_SIZE, "VM size of the GPU node pool"),
    OptionSpec("node-count", "int", "1", "nodes in the GPU node pool"),
    OptionSpec("system-vm-size", "str", DEFAULT_SYSTEM_VM_SIZE, "VM size of the system pool"),
    OptionSpec("gpu-driver", "str", "install",
               "install: AKS installs the NVIDIA driver; none: leave it to the GPU Operator",
               choices=tuple(GPU_DRIVERS)),
    OptionSpec("mig-profile", "str", None, "MIG instance profile for A100/H100/H200 sizes",
               choices=MIG_PROFILES),
    OptionSpec("keep", "bool", "false",
               "do not delete at the end (the expiry tag still lets the janitor delete it)"),
    OptionSpec("ttl", "duration", DEFAULT_TTL,
               "time to live written to the expiry tag, e.g. 90m, 6h, 1d (at most 7d)"),
    OptionSpec("existing", "bool", "false",
               "attach to the existing cluster --aks-resource-group/--aks-cluster-name: "
               "fetch credentials only, delete nothing"),
    OptionSpec("dry-run", "bool", "false",
               "print the planned Azure operations and request bodies as JSON; call nothing"),
    OptionSpec("run-id", "str", None, "id tagged on everything this run creates [random]"),
    OptionSpec("creator", "str", None, "creator tag [$GITHUB_ACTOR or the login name]"),
    OptionSpec("no-sweep", "bool", "false",
               "skip deleting expired resource groups of earlier runs before provisioning"),
    OptionSpec("timeouts", "str", None, "AKS waits as NAME=SECONDS,... (create, gpu-pool, delete)"),
)
SPECS = {spec.key: spec for spec in OPTIONS}

AKS_TIMEOUTS: dict[str, Timeout] = {t.name: t for t in (
    Timeout("create", 1800, "AKS creates a cluster in 5-10 minutes; a busy region takes 20+"),
    Timeout("gpu-pool", 1800, "GPU VMs boot, then the NVIDIA driver installs (5+ minutes), and "
            "scarce sizes may wait for capacity"),
    Timeout("delete", 1200, "a cluster deletes in 5-10 minutes; past this Azure keeps deleting on "
            "its own and the expiry tag lets the janitor catch anything left"),
)}

Lookup = Callable[[OptionSpec], Any]


@dataclass(frozen=True)
class AksSettings:
    subscription: str | None
    location: str
    resource_group: str
    cluster_name: str
    kubernetes_version: str | None
    vm_size: str
    node_count: int
    system_vm_size: str
    gpu_driver: str
    mig_profile: str | None
    keep: bool
    ttl: timedelta
    existing: bool
    dry_run: bool
    run_id: str
    creator: str
    sweep: bool
    timeouts: dict[str, float] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def expires_at(self) -> datetime:
        return self.created_at + self.ttl

    @property
    def expected_gpu(self) -> str | None:
        sku = sku_for_vm_size(self.vm_size)
        return sku.device_name if sku else None

    def timeout(self, name: str) -> float:
        return self.timeouts.get(name, AKS_TIMEOUTS[name].seconds)


def parse_duration(text: str) -> timedelta:
    """``90m``, ``6h``, ``1d``, ``2h30m`` or plain seconds."""
    raw = text.strip().lower()
    if raw.isdigit():
        return timedelta(seconds=int(raw))
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", raw)
    if not raw or not parts:
        raise UsageError(f"bad duration {text!r}: expected e.g. 90m, 6h, 1d or 2h30m")
    days, hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_bool(spec: OptionSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"bad value {value!r} for {spec.flag}: expected true or false")


def default_creator(env: Mapping[str, str]) -> str:
    for key in ("GITHUB_ACTOR", "BUILD_REQUESTEDFOREMAIL", "GITLAB_USER_LOGIN", "USER"):
        if env.get(key):
            return env[key]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([-_A-Za-z0-9]{0,61}[A-Za-z0-9])?")
_GROUP_NAME = re.compile(r"[-\w._()]{0,89}[-\w_()]", re.ASCII)
_RUN_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")


def raw_values(cli: Lookup, ini: Lookup, env: Mapping[str, str]) -> dict[str, Any]:
    """Each option's value by precedence; ``None`` where nothing set it and it has no default."""
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        value = cli(spec)
        if value is None:
            for name in (spec.env, *spec.extra_env):
                if env.get(name):
                    value = env[name]
                    break
        if value is None or value == "":
            value = ini(spec)
        if value is None or value == "" or value == []:
            value = spec.default
        values[spec.key] = value
    return values


def resolve(cli: Lookup, ini: Lookup, env: Mapping[str, str] | None = None) -> AksSettings:
    """Validate every option once, at configuration time, into one frozen settings object."""
    env = os.environ if env is None else env
    v = raw_values(cli, ini, env)
    for spec in OPTIONS:
        if spec.choices and v[spec.key] is not None:
            value = str(v[spec.key])
            match = [c for c in spec.choices if c.lower() == value.lower()]
            if not match:
                raise UsageError(f"bad value {value!r} for {spec.flag}: choose one of "
                                 f"{', '.join(spec.choices)}")
            v[spec.key] = match[0]

    run_id = str(v["run-id"] or secrets.token_hex(4)).lower()
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"bad run id {run_id!r}: use 1-32 lowercase letters, digits or '-'")
    existing = parse_bool(SPECS["existing"], v["existing"])
    if existing and not (v["resource-group"] and v["cluster-name"]):
        raise UsageError("--aks-existing needs --aks-resource-group and --aks-cluster-name",
                         hint="name the cluster to attach to; nothing of it will be deleted")
    group = str(v["resource-group"] or f"gpuconf-{run_id}")
    cluster = str(v["cluster-name"] or f"gpuconf-{run_id}")
    if not _GROUP_NAME.fullmatch(group):
        raise UsageError(f"bad resource group name {group!r}: 1-90 letters, digits, "
                         "'-', '_', '.', '(' or ')', not ending in '.'")
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise UsageError(f"bad cluster name {cluster!r}: 1-63 letters, digits, '-' or '_', "
                         "starting and ending with a letter or digit")

    try:
        count = int(v["node-count"])
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= 100:
        raise UsageError(f"bad --aks-node-count {v['node-count']!r}: expected 1 to 100")
    ttl = parse_duration(str(v["ttl"]))
    if not timedelta(minutes=10) <= ttl <= MAX_TTL:
        raise UsageError(f"bad --aks-ttl {v['ttl']!r}: expected between 10m and 7d",
                         hint="the expiry tag bounds what a crashed run can cost")

    vm_size = str(v["vm-size"])
    sku = sku_for_vm_size(vm_size)
    if sku is not None and sku.retired:
        raise UsageError(f"{sku.vm_size} ({sku.device_name}) is retired on AKS",
                         hint=f"use a current size such as {DEFAULT_VM_SIZE}")
    mig = v["mig-profile"]
    if mig and not (sku and any(m in sku.device_name for m in MIG_CAPABLE)):
        raise UsageError(f"--aks-mig-profile {mig} needs an A100, H100 or H200 VM size, "
                         f"not {vm_size}")

    timeouts = parse_overrides([str(v["timeouts"])]) if v["timeouts"] else {}
    unknown = sorted(set(timeouts) - set(AKS_TIMEOUTS))
    if unknown:
        raise UsageError(f"unknown AKS timeout {unknown[0]!r}; known: "
                         f"{', '.join(sorted(AKS_TIMEOUTS))}")

    return AksSettings(
        subscription=str(v["subscription"]).strip() if v["subscription"] else None,
        location=str(v["location"]).strip().lower().replace(" ", ""),
        resource_group=group,
        cluster_name=cluster,
        kubernetes_version=str(v["kubernetes-version"]) if v["kubernetes-version"] else None,
        vm_size=sku.vm_size if sku else vm_size,
        node_count=count,
        system_vm_size=str(v["system-vm-size"]),
        gpu_driver=GPU_DRIVERS[str(v["gpu-driver"])],
        mig_profile=str(mig) if mig else None,
        keep=parse_bool(SPECS["keep"], v["keep"]),
        ttl=ttl,
        existing=existing,
        dry_run=parse_bool(SPECS["dry-run"], v["dry-run"]),
        run_id=run_id,
        creator=str(v["creator"] or default_creator(env))[:256],
        sweep=not parse_bool(SPECS["no-sweep"], v["no-sweep"]),
        timeouts=timeouts,
    )


def resolve_mapping(values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> AksSettings:
    """Settings from a plain mapping keyed by option key (``vm-size``) or dest (``aks_vm_size``)."""
    def cli(spec: OptionSpec) -> Any:
        return values.get(spec.key, values.get(spec.dest))

    return resolve(cli, lambda spec: None, {} if env is None else env)
