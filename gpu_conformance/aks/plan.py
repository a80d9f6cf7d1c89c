"""ARM request bodies (wire format) and the dry-run plan; the same bodies are sent for real."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict

from gpu_conformance.aks.settings import AksSettings

RUN_ID_TAG = "gpu-conformance-run-id"
CREATOR_TAG = "gpu-conformance-created-by"
EXPIRES_TAG = "gpu-conformance-expires-at"
GPU_TAINT = "sku=gpu:NoSchedule"
GPU_POOL = "gpu"
SYSTEM_POOL = "system"
RUN_LABEL = "gpu-conformance/run-id"


class Operation(TypedDict, total=False):
    action: str
    method: str
    path: str
    when: str
    body: dict[str, Any]


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def tags(s: AksSettings) -> dict[str, str]:
    return {RUN_ID_TAG: s.run_id, CREATOR_TAG: s.creator, EXPIRES_TAG: format_time(s.expires_at)}


def resource_group_body(s: AksSettings) -> dict[str, Any]:
    return {"location": s.location, "tags": tags(s)}


def cluster_body(s: AksSettings) -> dict[str, Any]:
    system_pool: dict[str, Any] = {
        "name": SYSTEM_POOL, "mode": "System", "count": 1, "vmSize": s.system_vm_size,
        "osType": "Linux", "type": "VirtualMachineScaleSets", "tags": tags(s),
    }
    properties: dict[str, Any] = {
        "dnsPrefix": s.cluster_name[:54].rstrip("-_"),
        "agentPoolProfiles": [system_pool],
        "enableRBAC": True,
    }
    if s.kubernetes_version:
        properties["kubernetesVersion"] = s.kubernetes_version
        system_pool["orchestratorVersion"] = s.kubernetes_version
    return {"location": s.location, "tags": tags(s), "identity": {"type": "SystemAssigned"},
            "properties": properties}


def gpu_pool_body(s: AksSettings) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "vmSize": s.vm_size, "count": s.node_count, "osType": "Linux", "mode": "User",
        "type": "VirtualMachineScaleSets", "nodeTaints": [GPU_TAINT],
        "nodeLabels": {RUN_LABEL: s.run_id}, "tags": tags(s),
        "gpuProfile": {"driver": s.gpu_driver},
    }
    if s.kubernetes_version:
        properties["orchestratorVersion"] = s.kubernetes_version
    if s.mig_profile:
        properties["gpuInstanceProfile"] = s.mig_profile
    return {"properties": properties}


def group_path(s: AksSettings) -> str:
    return f"/subscriptions/{s.subscription or '{subscription}'}/resourceGroups/{s.resource_group}"


def cluster_path(s: AksSettings) -> str:
    return (f"{group_path(s)}/providers/Microsoft.ContainerService/managedClusters/"
            f"{s.cluster_name}")


def operations(s: AksSettings) -> list[Operation]:
    cluster = cluster_path(s)
    creds: Operation = {
        "action": "fetch user kubeconfig into a 0600 temporary file, deleted at teardown",
        "method": "POST", "path": f"{cluster}/listClusterUserCredential"}
    if s.existing:
        return [{"action": "read the existing cluster (must exist)", "method": "GET",
                 "path": cluster}, creds]
    ops: list[Operation] = []
    if s.sweep:
        ops.append({"action": f"delete resource groups tagged {EXPIRES_TAG} earlier than now",
                    "method": "GET", "path": f"/subscriptions/{s.subscription or '{subscription}'}"
                    f"/resourcegroups?$filter=tagName eq '{EXPIRES_TAG}'"})
    ops += [
        {"action": "create resource group", "method": "PUT", "path": group_path(s),
         "when": "only if absent; a group that exists is used and not deleted",
         "body": resource_group_body(s)},
        {"action": "create cluster with system pool", "method": "PUT", "path": cluster,
         "when": "refused if a cluster of this name exists without this run's tag "
                 "(use --aks-existing to attach)", "body": cluster_body(s)},
        {"action": "create GPU user pool", "method": "PUT",
         "path": f"{cluster}/agentPools/{GPU_POOL}", "body": gpu_pool_body(s)},
        creds,
    ]
    if s.keep:
        ops.append({"action": f"keep everything (--aks-keep); the janitor deletes it after "
                              f"{format_time(s.expires_at)}", "method": "NONE", "path": ""})
    else:
        ops += [
            {"action": "teardown: delete cluster", "method": "DELETE", "path": cluster},
            {"action": "teardown: delete resource group", "method": "DELETE",
             "path": group_path(s), "when": "only if this run created it"},
        ]
    return ops


def plan(s: AksSettings) -> dict[str, Any]:
    """Everything a run would do, as JSON-ready data; builds no client and reads no credential."""
    return {
        "backend": "aks",
        "dry_run": True,
        "mode": "existing" if s.existing else "provision",
        "subscription": s.subscription or "<unset: --aks-subscription or AZURE_SUBSCRIPTION_ID>",
        "location": s.location,
        "resource_group": s.resource_group,
        "cluster": s.cluster_name,
        "run_id": s.run_id,
        "expires_at": format_time(s.expires_at),
        "expected_gpu": None if s.existing else s.expected_gpu,
        "operations": operations(s),
    }
