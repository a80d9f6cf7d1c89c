"""Every manifest the project ships or generates passes the API server's own schema validation.

Server-side dry run with strict field validation: unknown or mistyped fields are errors,
exactly as a real cluster would judge them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_conformance import nodes
from gpu_conformance.gpus import sku_for_vm_size
from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.workloads import PROFILES

MANIFESTS = sorted((REPO_ROOT / "manifests").rglob("*.yaml"))
NAMESPACE = "default"


def dry_run(kubectl: Callable[..., Any], cluster: OfflineCluster, text: str,
            namespace: str | None = NAMESPACE) -> str:
    scope = ["-n", namespace] if namespace else []
    result = kubectl(cluster, "apply", "--dry-run=server", "--validate=strict", *scope,
                     "-f", "-", input=text, check=False)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_manifest_is_valid(path: Path, offline_cluster: OfflineCluster,
                                   kubectl: Callable[..., Any]) -> None:
    # a dry-run Namespace is not there for the dry-run objects inside it: make it real
    created = []
    for doc in yaml.safe_load_all(path.read_text()):
        namespace = (doc or {}).get("metadata", {}).get("namespace")
        if namespace and kubectl(offline_cluster, "get", "namespace", namespace,
                                 check=False).returncode != 0:
            kubectl(offline_cluster, "create", "namespace", namespace)
            created.append(namespace)
    try:
        out = dry_run(kubectl, offline_cluster, path.read_text(), namespace=None)
    finally:
        for namespace in created:
            kubectl(offline_cluster, "delete", "namespace", namespace, "--wait=true")
    assert "(server dry run)" in out


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_workload_profile_objects_are_valid(name: str, offline_cluster: OfflineCluster,
                                            kubectl: Callable[..., Any]) -> None:
    profile = PROFILES[name]
    objects = [*profile.extra_objects(NAMESPACE), profile.job_manifest(f"gpu-{name}", NAMESPACE)]
    out = dry_run(kubectl, offline_cluster, yaml.safe_dump_all(objects))
    assert f"job.batch/gpu-{name} created (server dry run)" in out


def test_simulated_node_manifests_are_valid(offline_cluster: OfflineCluster,
                                            kubectl: Callable[..., Any]) -> None:
    sku = sku_for_vm_size("Standard_NC24ads_A100_v4")
    assert sku is not None
    objects = [nodes.gpu_node("dry-gpu", sku, 1, taints=[dict(nodes.GPU_TAINT)]),
               nodes.system_node("dry-system")]
    out = dry_run(kubectl, offline_cluster, "\n---\n".join(json.dumps(o) for o in objects))
    assert out.count("(server dry run)") == 2
