"""AKS options, the dry-run plan, credential discovery and error classification (no Azure)."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from typing import Any

import pytest

from gpu_conformance import options
from gpu_conformance.aks import plan
from gpu_conformance.aks.credentials import credential_source, default_factory
from gpu_conformance.aks.errors import (
    AksCredentialError,
    AksQuotaError,
    clean_error,
    fault_of,
    transient_reason,
)
from gpu_conformance.aks.settings import AksSettings, from_values, parse_duration, resolve_mapping
from gpu_conformance.errors import UsageError
from gpu_conformance.gpus import DEFAULT_VM_SIZE
from gpu_conformance.options import AKS, BY_DEST, Opt


def test_defaults() -> None:
    s = resolve_mapping({}, env={"USER": "alice"})
    assert s.vm_size == DEFAULT_VM_SIZE and s.node_count == 1 and s.location == "eastus"
    assert re.fullmatch(r"[0-9a-f]{8}", s.run_id)
    assert s.resource_group == s.cluster_name == f"gpuconf-{s.run_id}"
    assert s.gpu_driver == "Install" and s.mig_profile is None
    assert s.ttl == timedelta(hours=6) and s.expires_at - s.created_at == s.ttl
    assert s.creator == "alice" and s.sweep and not (s.keep or s.existing or s.dry_run)
    assert s.expected_gpu == "Tesla T4"


def test_every_option_has_flag_dest_ini_and_env_names() -> None:
    for spec in AKS:
        assert spec.flag.startswith("--aks-") and spec.dest.startswith("aks_")
        assert spec.env.startswith("GPU_CONFORMANCE_AKS_") and spec.ini == spec.dest
    assert BY_DEST["aks_subscription"].extra_env == ("AZURE_SUBSCRIPTION_ID",)


def _resolve(cli: Any, ini: Any, env: dict[str, str]) -> AksSettings:
    return from_values(options.resolve(cli, ini, env), "r1", env=env)


def test_precedence_cli_then_env_then_ini() -> None:
    def values(cli: dict[str, Any], env: dict[str, str], ini: dict[str, str]) -> str:
        s = _resolve(lambda spec: cli.get(spec.dest), lambda spec: ini.get(spec.dest, ""), env)
        return s.location

    ini = {"aks_location": "westus3"}
    assert values({}, {}, ini) == "westus3"
    assert values({}, {"GPU_CONFORMANCE_AKS_LOCATION": "swedencentral"}, ini) == "swedencentral"
    assert values({"aks_location": "japaneast"},
                  {"GPU_CONFORMANCE_AKS_LOCATION": "swedencentral"}, ini) == "japaneast"


def test_subscription_from_azure_subscription_id() -> None:
    def cli(spec: Opt) -> None:
        return None

    s = _resolve(cli, lambda spec: None, {"AZURE_SUBSCRIPTION_ID": "sub-1"})
    assert s.subscription == "sub-1"


@pytest.mark.parametrize(("values", "message"), [
    ({"node-count": "0"}, "--aks-node-count"),
    ({"ttl": "8d"}, "--aks-ttl"),
    ({"ttl": "forever"}, "bad duration"),
    ({"vm-size": "Standard_NC6"}, "retired"),
    ({"mig-profile": "MIG1g"}, "needs an A100"),
    ({"gpu-driver": "maybe"}, "install, none"),
    ({"existing": True}, "--aks-existing needs"),
    ({"cluster-name": "-bad"}, "bad cluster name"),
    ({"run-id": "Has Space"}, "use 1-32 lowercase letters"),
    ({"timeouts": "aks-create=10,boot=5"}, "unknown timeout 'boot'"),
    ({"keep": "perhaps"}, "expects true or false"),
])
def test_bad_options_are_usage_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve_mapping(values)


def test_choices_are_case_insensitive_and_mig_on_a100() -> None:
    s = resolve_mapping({"vm-size": "standard_nc24ads_a100_v4", "mig-profile": "mig3g",
                         "gpu-driver": "NONE", "timeouts": "aks-create=2400"})
    assert s.vm_size == "Standard_NC24ads_A100_v4" and s.mig_profile == "MIG3g"
    assert s.gpu_driver == "None" and s.timeout("aks-create") == 2400
    assert s.expected_gpu == "NVIDIA A100 80GB PCIe"
    body = plan.gpu_pool_body(s)["properties"]
    assert body["gpuInstanceProfile"] == "MIG3g" and body["gpuProfile"] == {"driver": "None"}


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1d2h") == timedelta(days=1, hours=2)
    assert parse_duration("3600") == timedelta(hours=1)


def test_dry_run_plan_shows_gpu_pool_taint_size_and_tags_and_is_json() -> None:
    s = resolve_mapping({"subscription": "sub-1", "run-id": "abc", "creator": "ci",
                         "kubernetes-version": "1.33", "dry-run": True})
    data = json.loads(json.dumps(plan.plan(s)))
    assert data["dry_run"] is True and data["expected_gpu"] == "Tesla T4"
    ops = {op["action"]: op for op in data["operations"]}
    pool = ops["create GPU user pool"]
    assert pool["method"] == "PUT"
    assert pool["path"] == ("/subscriptions/sub-1/resourceGroups/gpuconf-abc/providers/"
                            "Microsoft.ContainerService/managedClusters/gpuconf-abc/agentPools/gpu")
    props = pool["body"]["properties"]
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["vmSize"] == "Standard_NC4as_T4_v3" and props["orchestratorVersion"] == "1.33"
    assert props["tags"] == {plan.RUN_ID_TAG: "abc", plan.CREATOR_TAG: "ci",
                             plan.EXPIRES_TAG: data["expires_at"]}
    cluster = ops["create cluster with system pool"]["body"]
    assert cluster["properties"]["kubernetesVersion"] == "1.33"
    assert "teardown: delete cluster" in ops and "teardown: delete resource group" in ops


def test_plan_for_existing_and_keep() -> None:
    existing = plan.plan(resolve_mapping({"existing": True, "resource-group": "rg",
                                          "cluster-name": "c"}))
    assert [op["method"] for op in existing["operations"]] == ["GET", "POST"]
    kept = plan.plan(resolve_mapping({"keep": True}))
    assert not [op for op in kept["operations"] if op["method"] == "DELETE"]
    assert "<unset" in kept["subscription"]


def test_plan_builds_no_client_and_imports_no_azure_identity() -> None:
    before = set(sys.modules)
    plan.plan(resolve_mapping({"dry-run": True}))
    assert not {m for m in set(sys.modules) - before if m.startswith("azure")}


@pytest.mark.parametrize(("env", "which", "expected"), [
    ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": "/f"},
     None, "workload identity"),
    ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}, None,
     "service principal secret"),
    ({"AZURE_CLIENT_ID": "c"}, "/usr/bin/az", "Azure CLI"),
    ({"AZURE_CLIENT_ID": "c"}, None, None),
    ({}, None, None),
])
def test_credential_discovery(env: dict[str, str], which: str | None,
                              expected: str | None) -> None:
    found = credential_source(env, lambda name: which if name == "az" else None)
    assert (found is None) if expected is None else (found is not None and expected in found)


def test_no_credentials_is_one_line_before_any_network_call() -> None:
    with pytest.raises(AksCredentialError) as info:
        default_factory({}, lambda name: None)()
    assert info.value.one_line().startswith("no Azure credentials found (set AZURE_TENANT_ID")


def _http_error(status: int, body: dict[str, Any]) -> Exception:
    from azure.core.exceptions import HttpResponseError

    class Response:  # the minimum azure-core reads to build its error
        def __init__(self) -> None:
            self.status_code = status
            self.reason = "Conflict"
            self.request = None
            self.headers = {"content-type": "application/json"}
            self.content_type = "application/json"

        def text(self, encoding: str | None = None) -> str:
            return json.dumps(body)

        def body(self) -> bytes:
            return json.dumps(body).encode()

    return HttpResponseError(response=Response())


def test_failed_lro_with_status_200_is_classified_by_nested_code() -> None:
    exc = _http_error(200, {"error": {"code": "ReconcileFailed", "message": "outer",
                                      "details": [{"code": "QuotaExceeded",
                                                   "message": "exceeding approved quota"}]}})
    fault = fault_of(exc)
    assert fault.status == 200 and fault.code == "QuotaExceeded"
    assert transient_reason(exc) is None
    assert isinstance(clean_error(exc, "create", None), AksQuotaError)


def test_quota_wording_in_409_operation_not_allowed_is_not_retried() -> None:
    exc = _http_error(409, {"error": {"code": "OperationNotAllowed", "message":
                                      "results in exceeding approved Total Regional Cores quota"}})
    assert transient_reason(exc) is None
    assert isinstance(clean_error(exc, "create", None), AksQuotaError)


@pytest.mark.parametrize(("code", "message", "reason"), [
    ("OperationNotAllowed", "another operation is in progress", "another operation"),
    ("InternalOperationError", "boom", "InternalOperationError"),
    ("Canceled", "was canceled by a later operation", "canceled by a later operation"),
    ("AllocationFailed", "no capacity", "AllocationFailed"),
    ("InvalidParameter", "bad", None),
])
def test_transient_reasons_are_named(code: str, message: str, reason: str | None) -> None:
    found = transient_reason(_http_error(409, {"error": {"code": code, "message": message}}))
    assert (found is None) if reason is None else (found is not None and reason in found)
