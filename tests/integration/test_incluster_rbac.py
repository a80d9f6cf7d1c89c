"""Issue 11: the in-cluster ServiceAccount's rights (manifests/incluster/rbac.yaml) are enough
for a whole run, and each one is needed: without it the run stops at once, naming it.

The suites run against a real offline cluster (RBAC on) with the ServiceAccount's own token,
exactly as the in-cluster Job authenticates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpu_conformance.errors import ExitCode
from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.permissions import ACCOUNT, NAMESPACE, PERMISSIONS, Permission
from tests.integration.conftest import Suites

RBAC = REPO_ROOT / "manifests" / "incluster" / "rbac.yaml"


def _token_kubeconfig(cluster: OfflineCluster, kubectl: Callable[..., Any], tmp: Path) -> Path:
    kubectl(cluster, "apply", "-f", str(RBAC))
    token = kubectl(cluster, "create", "token", ACCOUNT, "-n", NAMESPACE,
                    "--duration=2h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    path = tmp / "service-account.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _cluster_role_without(permission: Permission) -> dict[str, Any]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        if rule["apiGroups"] == [permission.group] and rule["resources"] == [permission.resource]:
            rule["verbs"] = [v for v in rule["verbs"] if v != permission.verb]
    role["rules"] = [r for r in role["rules"] if r["verbs"]]
    return dict(role)


def test_the_service_account_runs_every_suite_and_needs_each_right(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites], tmp_path: Path) -> None:
    cluster = make_cluster(gpu_nodes=2)
    kubeconfig = _token_kubeconfig(cluster, kubectl, tmp_path)
    args = ["--backend", "attach", f"--kubeconfig={kubeconfig}", "--workload", "all"]
    result = run_suites(*args)
    assert result.returncode == 0, result.output[-5000:]
    assert "passed" in result.output and "failed" not in result.output.split("=====")[-1]
    problems = []
    for permission in PERMISSIONS:
        kubectl(cluster, "apply", "-f", "-", input=json.dumps(_cluster_role_without(permission)))
        try:
            lacking = run_suites(*args, "-k", "rollout")
        finally:
            kubectl(cluster, "apply", "-f", str(RBAC))
        wanted = f"forbidden: the suite needs to {permission.text} (cluster-wide)"
        if lacking.returncode != ExitCode.CLUSTER_UNAVAILABLE or wanted not in lacking.output:
            problems.append(f"without {permission.text}: exit {lacking.returncode}, "
                            f"{lacking.output[-600:]}")
    assert not problems, "\n".join(problems)
