"""AKS backend against the real Azure SDK clients and an in-memory ARM (no network)."""

from __future__ import annotations

import logging
import re
import stat
import sys
from pathlib import Path

import pytest

# the helper module sits next to this file; importlib import mode does not add this folder
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from gpu_conformance.aks import plan
from gpu_conformance.aks.credentials import default_factory
from gpu_conformance.aks.errors import (
    AksArmError,
    AksAuthError,
    AksCapacityError,
    AksConflictError,
    AksCredentialError,
    AksParameterError,
    AksQuotaError,
)
from gpu_conformance.aks.provision import AksProvisioner
from gpu_conformance.aks.settings import resolve_mapping
from gpu_conformance.errors import ClusterError, UsageError
from tests.unit.aks_fake_arm import (
    KUBECONFIG,
    SUBSCRIPTION,
    TOKEN,
    FakeArm,
    arm_error,
    backend_for,
)

CLUSTER = r"/managedclusters/[^/]+$"
POOL = r"/agentpools/gpu$"
IN_PROGRESS = arm_error(
    "OperationNotAllowed",
    "Operation is not allowed because there's an in progress create managed cluster operation "
    "(7f3c) on the managed cluster. Please wait for it to finish.")
QUOTA_DETAIL = (
    "Operation could not be completed as it results in exceeding approved "
    "standardNCASv3_T4Family Cores quota. Location: eastus, Current Limit: 0, Current Usage: 0, "
    "Additional Required: 4, (Minimum) New Limit Required: 4.")


@pytest.fixture
def arm() -> FakeArm:
    return FakeArm()


def methods(arm: FakeArm) -> list[str]:
    return [re.sub(r"/op\d+", "/OP", f"{r.method} {r.path.lower().split(SUBSCRIPTION)[-1]} "
                                    f"{r.status}") for r in arm.requests]


def test_provision_creates_tagged_group_cluster_and_tainted_gpu_pool(
        arm: FakeArm, caplog: pytest.LogCaptureFixture) -> None:
    backend, logs = backend_for(arm)
    caplog.set_level(logging.DEBUG)

    handle = backend.up(logs.append)

    assert handle.mode == "created"
    assert handle.name == "gpuconf-t1"
    assert handle.expected_gpu == "Tesla T4"
    assert handle.kubeconfig is not None and handle.kubeconfig.read_bytes() == KUBECONFIG
    assert stat.S_IMODE(handle.kubeconfig.stat().st_mode) == 0o600
    assert handle.properties["aks.vm_size"] == "Standard_NC4as_T4_v3"
    tags = arm.calls("PUT", "/resourcegroups/gpuconf-t1")[0].body["tags"]
    assert tags[plan.RUN_ID_TAG] == "t1" and tags[plan.CREATOR_TAG] == "ci-bot"
    assert tags[plan.EXPIRES_TAG].endswith("Z")
    cluster = arm.calls("PUT", "/managedclusters/gpuconf-t1")[0].body
    assert cluster["tags"] == tags and cluster["identity"] == {"type": "SystemAssigned"}
    assert cluster["properties"]["agentPoolProfiles"][0]["mode"] == "System"
    pool = arm.calls("PUT", "/agentpools/gpu")[0].body["properties"]
    assert pool["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert pool["vmSize"] == "Standard_NC4as_T4_v3" and pool["mode"] == "User"
    assert pool["gpuProfile"] == {"driver": "Install"} and pool["tags"] == tags
    # each LRO was polled through InProgress to Succeeded before the next step
    polls = [r for r in arm.requests if "/operations/" in r.path]
    assert len(polls) == 4
    assert "UseGPUDedicatedVHD" not in str([r.body for r in arm.requests])

    kubeconfig = handle.kubeconfig
    backend.down(logs.append)

    assert not kubeconfig.exists()
    tail = methods(arm)[-6:]
    assert tail == [
        "DELETE /resourcegroups/gpuconf-t1/providers/microsoft.containerservice/"
        "managedclusters/gpuconf-t1 202",
        "GET /operationresults/OP 202", "GET /operationresults/OP 204",
        "DELETE /resourcegroups/gpuconf-t1 202",
        "GET /operationresults/OP 202", "GET /operationresults/OP 204",
    ], tail
    assert arm.groups == {} and arm.clusters == {}
    before = len(arm.requests)
    backend.down(logs.append)
    assert len(arm.requests) == before, "a second down() must be a no-op"
    text = "\n".join(logs) + caplog.text
    assert TOKEN not in text and "secret-kubeconfig-token" not in text


def test_429_with_retry_after_is_retried_by_azure_core_not_by_us(arm: FakeArm) -> None:
    arm.fail("PUT", CLUSTER, 429, arm_error("TooManyRequests", "slow down"), {"Retry-After": "0"})
    backend, logs = backend_for(arm)

    backend.up(logs.append)

    assert [r.status for r in arm.calls("PUT", "/managedclusters/")][:2] == [429, 201]
    assert not [line for line in logs if "will retry" in line]
    backend.down(logs.append)


def test_409_operation_in_progress_is_retried_then_succeeds(arm: FakeArm) -> None:
    arm.fail("PUT", POOL, 409, IN_PROGRESS, times=2)
    backend, logs = backend_for(arm)

    handle = backend.up(logs.append)

    assert handle.expected_gpu == "Tesla T4"
    assert [r.status for r in arm.calls("PUT", "/agentpools/gpu")] == [409, 409, 201]
    assert "create GPU pool gpu: attempt 1/6 failed (another operation is in progress); " \
           "will retry in 0s" in logs
    assert any("attempt 2/6 failed" in line for line in logs)
    backend.down(logs.append)


def test_retries_are_bounded(arm: FakeArm) -> None:
    arm.fail("PUT", POOL, 409, IN_PROGRESS, times=10)
    backend, logs = backend_for(arm)

    with pytest.raises(AksArmError, match="OperationNotAllowed"):
        backend.up(logs.append)

    assert len(arm.calls("PUT", "/agentpools/gpu")) == 6
    assert arm.groups == {}, "teardown ran after the failure"


def test_canceled_by_later_operation_lro_is_retried(arm: FakeArm) -> None:
    arm.fail_lro("PUT", POOL, arm_error(
        "Canceled", "Operation was canceled by a later operation on the agent pool."))
    backend, logs = backend_for(arm)

    backend.up(logs.append)

    assert len(arm.calls("PUT", "/agentpools/gpu")) == 2
    assert any("canceled by a later operation" in line for line in logs)
    backend.down(logs.append)


@pytest.mark.parametrize("how", ["failed-lro", "409-initial", "400-initial"])
def test_quota_is_one_clear_line_no_retry_and_teardown_runs(arm: FakeArm, how: str) -> None:
    if how == "failed-lro":
        arm.fail_lro("PUT", POOL, arm_error(
            "ReconcileVMSSAgentPoolFailed", "Agent pool provisioning failed.",
            [{"code": "QuotaExceeded", "message": QUOTA_DETAIL}]))
    elif how == "409-initial":
        arm.fail("PUT", POOL, 409, arm_error("OperationNotAllowed", QUOTA_DETAIL))
    else:
        arm.fail("PUT", POOL, 400, arm_error("QuotaExceeded", QUOTA_DETAIL))
    backend, logs = backend_for(arm)

    with pytest.raises(AksQuotaError) as info:
        backend.up(logs.append)

    line = info.value.one_line()
    assert "\n" not in line and "exceeding approved standardNCASv3_T4Family Cores quota" in line
    assert "Standard_NC4as_T4_v3 in eastus" in info.value.hint
    assert "not retried" in info.value.hint
    assert len(arm.calls("PUT", "/agentpools/gpu")) == 1
    assert not [entry for entry in logs if "will retry" in entry]
    assert arm.calls("DELETE", "/managedclusters/gpuconf-t1")
    assert arm.calls("DELETE", "/resourcegroups/gpuconf-t1")
    assert arm.groups == {} and arm.clusters == {}


@pytest.mark.parametrize(("status", "code", "error"), [
    (403, "AuthorizationFailed", AksAuthError),
    (401, "InvalidAuthenticationToken", AksAuthError),
    (400, "SkuNotAvailable", AksCapacityError),
    (409, "NotAvailableForSubscription", AksCapacityError),
    (400, "InvalidParameter", AksParameterError),
    (409, "MissingSubscriptionRegistration", AksParameterError),
])
def test_permanent_errors_fail_fast(arm: FakeArm, status: int, code: str,
                                    error: type[Exception]) -> None:
    arm.fail("PUT", CLUSTER, status, arm_error(code, f"{code} happened"))
    backend, logs = backend_for(arm)

    with pytest.raises(error) as info:
        backend.up(logs.append)

    assert code in str(info.value) and info.value.hint  # type: ignore[attr-defined]
    assert len(arm.calls("PUT", "/managedclusters/")) == 1
    assert arm.groups == {}


def test_invalid_parameter_is_a_usage_error(arm: FakeArm) -> None:
    arm.fail("PUT", CLUSTER, 400, arm_error("InvalidParameter", "bad k8s version 1.2"))
    backend, logs = backend_for(arm)
    with pytest.raises(UsageError):
        backend.up(logs.append)


def test_ctrl_c_during_provisioning_tears_down(arm: FakeArm) -> None:
    arm.interrupt("PUT", POOL)
    backend, logs = backend_for(arm)

    with pytest.raises(KeyboardInterrupt):
        backend.up(logs.append)

    assert arm.calls("DELETE", "/managedclusters/gpuconf-t1")
    assert arm.groups == {} and arm.clusters == {}
    assert any("AKS setup stopped (KeyboardInterrupt)" in line for line in logs)


def test_ctrl_c_before_cluster_put_reaches_arm_deletes_idempotently(arm: FakeArm) -> None:
    arm.interrupt("PUT", CLUSTER)
    backend, logs = backend_for(arm)

    with pytest.raises(KeyboardInterrupt):
        backend.up(logs.append)

    # the cluster never existed: DELETE answers 204 and counts as done
    assert [r.status for r in arm.calls("DELETE", "/managedclusters/")] == [204]
    assert arm.groups == {}


def test_failure_while_the_suites_run_still_tears_down(arm: FakeArm) -> None:
    backend, logs = backend_for(arm)
    handle = backend.up(logs.append)
    kubeconfig = handle.kubeconfig
    with pytest.raises(AssertionError):
        try:
            raise AssertionError("a conformance test failed")
        finally:
            backend.down(logs.append)
    assert kubeconfig is not None and not kubeconfig.exists()
    assert arm.groups == {}


def test_keep_leaves_everything_and_says_how_to_delete(arm: FakeArm) -> None:
    backend, logs = backend_for(arm, keep=True)
    handle = backend.up(logs.append)
    backend.down(logs.append)
    assert not arm.calls("DELETE")
    assert handle.kubeconfig is not None and not handle.kubeconfig.exists()
    assert any("az group delete --name gpuconf-t1 --yes --no-wait" in line for line in logs)


def test_existing_resource_group_is_used_and_not_deleted(arm: FakeArm) -> None:
    arm.add_group("shared-rg", {"owner": "team"})
    backend, logs = backend_for(arm, resource_group="shared-rg")
    backend.up(logs.append)
    backend.down(logs.append)
    assert not arm.calls("PUT", "/resourcegroups/shared-rg$")
    assert arm.calls("DELETE", "/managedclusters/gpuconf-t1")
    assert not [r for r in arm.calls("DELETE") if r.path.lower().endswith("/shared-rg")]
    assert "shared-rg" in arm.groups


def test_foreign_cluster_of_the_same_name_is_refused(arm: FakeArm) -> None:
    arm.add_group("shared-rg")
    arm.add_cluster("shared-rg", "prod", {"location": "eastus", "properties": {}})
    backend, logs = backend_for(arm, resource_group="shared-rg", cluster_name="prod")

    with pytest.raises(AksConflictError) as info:
        backend.up(logs.append)

    assert "--aks-existing" in info.value.one_line()
    assert not arm.calls("PUT") and not arm.calls("DELETE")


def test_attach_to_existing_cluster_fetches_credentials_and_deletes_nothing(arm: FakeArm) -> None:
    arm.add_group("team-rg")
    arm.add_cluster("team-rg", "gpu-prod", {"location": "westeurope", "properties": {
        "kubernetesVersion": "1.33.1",
        "agentPoolProfiles": [{"name": "system", "vmSize": "Standard_D4s_v5"},
                              {"name": "v100", "vmSize": "Standard_NC6s_v3"}]}})
    backend, logs = backend_for(arm, existing=True, resource_group="team-rg",
                                cluster_name="gpu-prod")

    handle = backend.up(logs.append)
    backend.down(logs.append)

    assert handle.expected_gpu == "Tesla V100-PCIE-16GB"
    assert handle.properties["aks.mode"] == "existing"
    assert handle.properties["aks.kubernetes_version"] == "1.33.1"
    assert {r.method for r in arm.requests} == {"GET", "POST"}
    assert handle.kubeconfig is not None and not handle.kubeconfig.exists()


def test_attach_to_missing_cluster_is_a_usage_error(arm: FakeArm) -> None:
    backend, logs = backend_for(arm, existing=True, resource_group="nope", cluster_name="nope")
    with pytest.raises(UsageError, match="not found"):
        backend.up(logs.append)


def test_missing_credentials_fail_before_any_request(arm: FakeArm) -> None:
    settings = resolve_mapping({"subscription": SUBSCRIPTION, "run-id": "t1"})
    backend = AksProvisioner(settings, credential_factory=default_factory({}, lambda _: None),
                         client_kwargs=arm.transport_kwargs())
    with pytest.raises(AksCredentialError) as info:
        backend.up(lambda _: None)
    assert "AZURE_FEDERATED_TOKEN_FILE" in info.value.hint and "az login" in info.value.hint
    assert arm.requests == []


def test_missing_subscription_and_dry_run_never_build_a_credential(arm: FakeArm) -> None:
    def explode() -> object:
        raise AssertionError("credential must not be created")

    for values in ({"run-id": "t1"}, {"subscription": SUBSCRIPTION, "dry-run": True}):
        backend = AksProvisioner(resolve_mapping(values), credential_factory=explode)  # type: ignore
        with pytest.raises(UsageError):
            backend.up(lambda _: None)
    assert arm.requests == []


def test_a_later_run_sweeps_expired_groups_first(arm: FakeArm) -> None:
    arm.add_group("gpuconf-old", {plan.RUN_ID_TAG: "old", plan.EXPIRES_TAG: "2020-01-01T00:00:00Z"})
    backend, logs = backend_for(arm, no_sweep=False)
    backend.up(logs.append)
    assert "gpuconf-old" not in arm.groups
    assert any("janitor: deleting resource group gpuconf-old" in line for line in logs)
    backend.down(logs.append)


def test_teardown_failure_is_one_line_with_manual_command(arm: FakeArm) -> None:
    backend, logs = backend_for(arm)
    backend.up(logs.append)
    arm.fail("DELETE", r"/resourcegroups/gpuconf-t1$", 403,
             arm_error("AuthorizationFailed", "no delete permission"))
    with pytest.raises(ClusterError) as info:
        backend.down(logs.append)
    assert "AKS teardown incomplete" in str(info.value)
    assert "az group delete --name gpuconf-t1" in info.value.hint


def test_token_failure_at_runtime_is_one_line_and_nothing_is_created(arm: FakeArm) -> None:
    from azure.identity import CredentialUnavailableError

    class NoToken:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise CredentialUnavailableError("EnvironmentCredential authentication unavailable. "
                                             "Environment variables are not fully configured.")

        get_token_info = get_token

    settings = resolve_mapping({"subscription": SUBSCRIPTION, "run-id": "t1", "no-sweep": True})
    backend = AksProvisioner(settings, credential_factory=NoToken,  # type: ignore[arg-type]
                         client_kwargs=arm.transport_kwargs(), retry_wait=0)
    with pytest.raises(AksAuthError) as info:
        backend.up(lambda _: None)
    assert info.value.one_line().startswith(
        "check resource group gpuconf-t1 failed: no Azure token: EnvironmentCredential "
        "authentication unavailable")
    assert arm.requests == []


def test_ctrl_c_during_teardown_then_down_again_finishes(arm: FakeArm) -> None:
    backend, logs = backend_for(arm)
    backend.up(logs.append)
    arm.interrupt("DELETE", r"/resourcegroups/gpuconf-t1$")
    with pytest.raises(KeyboardInterrupt):
        backend.down(logs.append)
    assert "gpuconf-t1" in arm.groups and not arm.clusters
    backend.down(logs.append)
    assert len(arm.calls("DELETE", "/managedclusters/")) == 1
    assert arm.groups == {}


def test_down_resumes_an_accepted_delete_from_its_continuation_token(arm: FakeArm) -> None:
    backend, logs = backend_for(arm)
    backend.up(logs.append)
    # as left by a first down() interrupted while waiting on the accepted DELETE
    clients = backend._clients
    poller = clients.aks.managed_clusters.begin_delete("gpuconf-t1", "gpuconf-t1")
    backend.tokens["delete cluster gpuconf-t1"] = poller.continuation_token()
    poller.wait()

    backend.down(logs.append)

    assert len(arm.calls("DELETE", "/managedclusters/")) == 1, "resumed, not sent again"
    assert "deleted cluster gpuconf-t1" in logs and arm.groups == {}
