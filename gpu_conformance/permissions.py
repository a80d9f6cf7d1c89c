"""What the suites need of the Kubernetes API, in one table: the in-cluster RBAC set
(manifests/incluster/rbac.yaml) is generated from it, and every run checks it first with
SelfSubjectAccessReviews, so missing rights are one line naming each verb and resource instead
of a 403 in the middle of a check.

Every namespace the run touches is made at run time (gpuconf-<run id>, the plugin's), so the
rights are cluster-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from gpu_conformance import kapi
from gpu_conformance.errors import AccessError
from gpu_conformance.kube import RBAC_HINT, call


@dataclass(frozen=True)
class Permission:
    group: str
    resource: str
    verb: str
    why: str

    @property
    def text(self) -> str:
        return f"{self.verb} {self.resource}" + (f".{self.group}" if self.group else "")


PERMISSIONS: tuple[Permission, ...] = (
    Permission("", "namespaces", "create", "the run's namespaces, the plugin's if missing"),
    Permission("", "namespaces", "delete", "remove the run's (and dead runs') namespaces"),
    Permission("", "namespaces", "get", "a namespace that already exists or is terminating"),
    Permission("", "namespaces", "list", "find what dead runs left; wait for deletions"),
    Permission("", "namespaces", "watch", "wait for deletions"),
    Permission("", "nodes", "get", "the node a workload ran on, who holds its GPUs"),
    Permission("", "nodes", "list", "find GPU nodes; judge capacity"),
    Permission("", "nodes", "watch", "wait for GPU capacity"),
    Permission("", "pods", "list", "plugin pods per node, workload pods, GPU holders"),
    Permission("", "pods", "watch", "wait for the isolation probes"),
    Permission("", "pods", "create", "the isolation probes (--workload isolation, all)"),
    Permission("", "pods", "delete", "remove each isolation phase's probes"),
    Permission("", "pods/log", "get", "the workload's device line; failure diagnostics"),
    Permission("", "events", "list", "failure diagnostics"),
    Permission("", "serviceaccounts", "list", "wait for a new namespace's default account"),
    Permission("", "serviceaccounts", "watch", "wait for a new namespace's default account"),
    Permission("", "configmaps", "create", "scripts of the torch, bandwidth, NCCL profiles"),
    Permission("", "configmaps", "get", "a create retried after a lost answer"),
    Permission("coordination.k8s.io", "leases", "create", "the run's Lease (it is alive)"),
    Permission("coordination.k8s.io", "leases", "get", "is another run alive?"),
    Permission("coordination.k8s.io", "leases", "patch", "renew the run's Lease"),
    Permission("apps", "daemonsets", "list", "find the cluster's device plugin"),
    Permission("apps", "daemonsets", "watch", "wait for the plugin's rollout"),
    Permission("apps", "daemonsets", "get", "join or leave a shared plugin"),
    Permission("apps", "daemonsets", "create", "install the plugin when the cluster has none"),
    Permission("apps", "daemonsets", "patch", "join or leave a shared plugin"),
    Permission("apps", "daemonsets", "delete", "remove the plugin the run installed"),
    Permission("batch", "jobs", "create", "the GPU workloads"),
    Permission("batch", "jobs", "get", "a create retried after a lost answer"),
    Permission("batch", "jobs", "list", "wait for the workloads"),
    Permission("batch", "jobs", "watch", "wait for the workloads"),
)


def missing(api: client.ApiClient, needed: tuple[Permission, ...] = PERMISSIONS) -> list[Permission]:
    """The permissions the current credentials lack (one SelfSubjectAccessReview each)."""
    auth = kapi.AuthorizationV1Api(api)
    lacking = []
    for p in needed:
        resource, _, sub = p.resource.partition("/")
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"group": p.group, "resource": resource,
                                                "subresource": sub, "verb": p.verb}}}
        review: Any = call(auth.create_self_subject_access_review, body)
        if not (review.status and review.status.allowed):
            lacking.append(p)
    return lacking


def require(api: client.ApiClient) -> None:
    """One line naming every missing right, or nothing."""
    lacking = missing(api)
    if lacking:
        raise AccessError(
            f"forbidden: the suite needs to {', '.join(p.text for p in lacking)} (cluster-wide); "
            f"the credentials lack {len(lacking)} of {len(PERMISSIONS)} rights",
            hint=RBAC_HINT)


NAMESPACE = "gpu-conformance"
ACCOUNT = "gpu-conformance"


def rbac_manifest() -> str:
    """manifests/incluster/rbac.yaml: the ServiceAccount, its ClusterRole and the binding."""
    import yaml

    rules: dict[tuple[str, str], list[str]] = {}
    for p in PERMISSIONS:
        rules.setdefault((p.group, p.resource), []).append(p.verb)
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ACCOUNT},
         "rules": [{"apiGroups": [group], "resources": [resource], "verbs": verbs}
                   for (group, resource), verbs in rules.items()]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ACCOUNT},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]},
    ]
    header = ("# Generated from gpu_conformance/permissions.py (make docs): the least-privilege "
              "rights of the suites\n# when they run inside the cluster they validate "
              "(job.yaml, cronjob.yaml).\n")
    return header + yaml.safe_dump_all(docs, sort_keys=False)
