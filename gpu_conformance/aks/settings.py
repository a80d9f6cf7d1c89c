"""AKS settings: the ``--aks-*`` options of the one options table, validated once.

The options themselves (flags, ini keys, ``GPU_CONFORMANCE_AKS_*`` variables) are declared in
``gpu_conformance.options``; their bounds (``aks-create``, ``aks-gpu-pool``, ``aks-delete``) are
in ``gpu_conformance.timeouts``, overridden like every other with ``--gpu-timeout``. The run id
is the run's own (``--run-id``), so namespaces and Azure tags match.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gpu_conformance import options
from gpu_conformance.errors import UsageError
from gpu_conformance.gpus import DEFAULT_VM_SIZE, sku_for_vm_size
from gpu_conformance.options import Values
from gpu_conformance.timeouts import Timeouts

MAX_TTL = timedelta(days=7)
MIG_CAPABLE = ("A100", "H100", "H200")
GPU_DRIVERS = {"install": "Install", "none": "None"}
TIMEOUT_NAMES = ("aks-create", "aks-gpu-pool", "aks-delete")


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
    timeouts: Timeouts = field(default_factory=Timeouts)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def expires_at(self) -> datetime:
        return self.created_at + self.ttl

    @property
    def expected_gpu(self) -> str | None:
        sku = sku_for_vm_size(self.vm_size)
        return sku.device_name if sku else None

    def timeout(self, name: str) -> float:
        """An AKS bound by its table name (``aks-create``, ``aks-gpu-pool``, ``aks-delete``)."""
        return self.timeouts[name]


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


def from_values(v: Values, run_id: str, timeouts: Timeouts | None = None,
                env: Mapping[str, str] | None = None) -> AksSettings:
    """Validate the AKS part of the resolved options; every error names where it came from."""
    env = os.environ if env is None else env
    existing = bool(v["aks_existing"])
    if existing and not (v["aks_resource_group"] and v["aks_cluster_name"]):
        raise UsageError("--aks-existing needs --aks-resource-group and --aks-cluster-name",
                         hint="name the cluster to attach to; nothing of it will be deleted")
    group = str(v["aks_resource_group"] or f"gpuconf-{run_id}")
    cluster = str(v["aks_cluster_name"] or f"gpuconf-{run_id}")
    if not _GROUP_NAME.fullmatch(group):
        raise UsageError(f"bad resource group name {group!r}: 1-90 letters, digits, "
                         "'-', '_', '.', '(' or ')', not ending in '.'")
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise UsageError(f"bad cluster name {cluster!r}: 1-63 letters, digits, '-' or '_', "
                         "starting and ending with a letter or digit")
    count = v["aks_node_count"]
    if not 1 <= count <= 100:
        raise UsageError(f"bad {v.source('aks_node_count')} {count!r}: expected 1 to 100")
    ttl = parse_duration(str(v["aks_ttl"]))
    if not timedelta(minutes=10) <= ttl <= MAX_TTL:
        raise UsageError(f"bad {v.source('aks_ttl')} {v['aks_ttl']!r}: expected between 10m "
                         "and 7d", hint="the expiry tag bounds what a crashed run can cost")
    vm_size = str(v["aks_vm_size"])
    sku = sku_for_vm_size(vm_size)
    if sku is not None and sku.retired:
        raise UsageError(f"{sku.vm_size} ({sku.device_name}) is retired on AKS",
                         hint=f"use a current size such as {DEFAULT_VM_SIZE}")
    mig = v["aks_mig_profile"]
    if mig and not (sku and any(m in sku.device_name for m in MIG_CAPABLE)):
        raise UsageError(f"--aks-mig-profile {mig} needs an A100, H100 or H200 VM size, "
                         f"not {vm_size}")
    subscription = v["aks_subscription"]
    return AksSettings(
        subscription=str(subscription).strip() if subscription else None,
        location=str(v["aks_location"]).strip().lower().replace(" ", ""),
        resource_group=group,
        cluster_name=cluster,
        kubernetes_version=str(v["aks_kubernetes_version"]) if v["aks_kubernetes_version"] else None,
        vm_size=sku.vm_size if sku else vm_size,
        node_count=count,
        system_vm_size=str(v["aks_system_vm_size"]),
        gpu_driver=GPU_DRIVERS[str(v["aks_gpu_driver"])],
        mig_profile=str(mig) if mig else None,
        keep=bool(v["aks_keep"]),
        ttl=ttl,
        existing=existing,
        dry_run=bool(v["aks_dry_run"]),
        run_id=run_id,
        creator=str(v["aks_creator"] or default_creator(env))[:256],
        sweep=not v["aks_no_sweep"],
        timeouts=timeouts or Timeouts(),
    )


def resolve_mapping(given: Mapping[str, Any], env: Mapping[str, str] | None = None
                    ) -> AksSettings:
    """Settings from plain values keyed by AKS option key (``vm-size``), plus ``run-id`` and
    ``timeouts`` (``NAME=SECONDS,...``); for the CLI and tests."""
    from gpu_conformance.settings import Settings

    env = {} if env is None else env
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key == "run-id":
            values["gpu_run_id"] = value
        elif key == "timeouts":
            values["gpu_timeouts"] = [value] if isinstance(value, str) else value
        else:
            values[key if key.startswith(("aks_", "gpu_")) else "aks-" + key] = value
    settings = Settings.from_values(options.from_mapping(values, env))
    run_id = settings.run_id or secrets.token_hex(4)
    return from_values(settings.values, run_id, settings.timeouts, env)

