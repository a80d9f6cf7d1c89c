"""The run's settings: the options table resolved and validated once, at configuration time.

Core fields are typed here; what a backend contributes stays in ``values`` and is read by that
backend (each backend turns its part into its own settings, from the same resolved values).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_conformance import gates, gpus, options, workloads
from gpu_conformance.errors import UsageError
from gpu_conformance.options import Values
from gpu_conformance.timeouts import Timeouts, parse_overrides
from gpu_conformance.workloads.isolation import NAME as ISOLATION

#: the longest run id a namespace name ``gpuconf-<id>-<worker>`` and an Azure tag both take
_RUN_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")


def new_run_id() -> str:
    """``MMDDHHMM-xxxx``: sorts by start time, unique enough for concurrent runs."""
    return time.strftime("%m%d%H%M") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Settings:
    backend: str
    kubeconfig: Path | None
    kube_context: str | None
    cluster_name: str | None
    keep_cluster: bool
    run_id: str | None
    gpu_nodes: int
    gpus_per_node: int
    gpu_product: str | None
    taint_gpu_nodes: bool
    plugin_mode: str
    plugin_manifest: str
    #: Job profiles (gpu_conformance.workloads.PROFILES) and "isolation" (probe pods)
    workloads: tuple[str, ...]
    #: how many GPU nodes each profile runs on: None for all
    workload_nodes: int | None
    gpus_per_job: int
    busy: str
    report_dir: Path
    expect_gpu: str | None
    min_accuracy: float | None
    #: health and performance gate overrides, NAME=VALUE (gpu_conformance.gates)
    gate_overrides: tuple[str, ...]
    timeouts: Timeouts
    #: every option's resolved value (backends read their own from here)
    values: Values

    @classmethod
    def from_values(cls, v: Values) -> Settings:
        names = [n.strip() for n in str(v["gpu_workload"]).split(",") if n.strip()]
        chosen = ((*workloads.PROFILES, ISOLATION) if names == ["all"]
                  else tuple(dict.fromkeys(names)))
        if not chosen:
            raise UsageError(f"{v.source('gpu_workload')} names no workload profile")
        for name in chosen:
            if name != ISOLATION:  # pods, not a Job (suites/test_isolation.py)
                try:
                    workloads.get_profile(name)
                except UsageError:
                    raise UsageError(f"unknown workload {name!r}; choose one of "
                                     f"{', '.join((*workloads.PROFILES, ISOLATION))}") from None
        for dest, low in (("gpu_nodes", 0), ("gpus_per_node", 1), ("gpu_gpus_per_job", 1)):
            if v[dest] < low:
                raise UsageError(f"{v.source(dest)} must be at least {low}, got {v[dest]}")
        accuracy = v["gpu_min_accuracy"]
        if accuracy is not None and not 0 <= accuracy <= 1:
            raise UsageError(f"{v.source('gpu_min_accuracy')} must be between 0 and 1, "
                             f"got {accuracy}")
        if v["gpu_expect"]:
            try:
                re.compile(v["gpu_expect"])
            except re.error as exc:
                raise UsageError(f"{v.source('gpu_expect')} {v['gpu_expect']!r} is not a valid "
                                 f"regular expression: {exc}") from None
        if v["gpu_product"]:
            try:
                gpus.resolve_product(v["gpu_product"])
            except UsageError as exc:
                raise UsageError(f"{v.source('gpu_product')}: {exc}") from None
        run_id = v["gpu_run_id"]
        if run_id is not None and not _RUN_ID.fullmatch(run_id):
            raise UsageError(f"{v.source('gpu_run_id')} {run_id!r}: use 1-32 lowercase letters, "
                             "digits or '-'")
        spread = str(v["gpu_workload_nodes"]).strip().lower()
        if spread in ("all", "one"):
            workload_nodes = None if spread == "all" else 1
        elif spread.isdigit() and int(spread) >= 1:
            workload_nodes = int(spread)
        else:
            raise UsageError(f"{v.source('gpu_workload_nodes')} {v['gpu_workload_nodes']!r}: "
                             "expected all, one or a number >= 1")
        gate_overrides = tuple(v["gpu_gates"] or ())
        try:
            gates.parse_overrides(gate_overrides)
        except UsageError as exc:
            raise UsageError(f"{v.source('gpu_gates')}: {exc}") from None
        kubeconfig = v["kubeconfig"]
        return cls(
            backend=v["gpu_backend"],
            kubeconfig=Path(kubeconfig).expanduser() if kubeconfig else None,
            kube_context=v["gpu_kube_context"],
            cluster_name=v["cluster_name"],
            keep_cluster=bool(v["keep_cluster"]),
            run_id=run_id,
            gpu_nodes=v["gpu_nodes"], gpus_per_node=v["gpus_per_node"],
            gpu_product=v["gpu_product"], taint_gpu_nodes=bool(v["gpu_taint_nodes"]),
            plugin_mode=v["gpu_plugin"], plugin_manifest=v["gpu_plugin_manifest"],
            workloads=chosen, workload_nodes=workload_nodes, gpus_per_job=v["gpu_gpus_per_job"],
            busy=v["gpu_busy"],
            report_dir=Path(v["gpu_report_dir"]).expanduser(),
            expect_gpu=v["gpu_expect"], min_accuracy=accuracy, gate_overrides=gate_overrides,
            timeouts=Timeouts(parse_overrides(v["gpu_timeouts"] or [],
                                              v.source("gpu_timeouts"))),
            values=v,
        )

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        return cls.from_values(options.from_pytest_config(config))

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any], env: Mapping[str, str] | None = None
                     ) -> Settings:
        """Settings from plain values (tests, the CLI), keyed by dest or flag name."""
        return cls.from_values(options.from_mapping(given, env))
