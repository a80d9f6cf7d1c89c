"""`gpu-conformance aks janitor`: only expired, tagged leftovers are deleted (no network)."""

from __future__ import annotations

import argparse
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from gpu_conformance.aks import cli as aks
from gpu_conformance.aks.plan import EXPIRES_TAG, RUN_ID_TAG
from tests.unit.aks_fake_arm import SUBSCRIPTION, FakeArm, FakeCredential

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PAST = "2026-11-28T11:00:00Z"
FUTURE = "2026-11-28T13:00:00Z"


@pytest.fixture
def arm() -> FakeArm:
    arm = FakeArm()
    arm.add_group("gpuconf-expired", {RUN_ID_TAG: "a", EXPIRES_TAG: PAST})
    arm.add_group("gpuconf-live", {RUN_ID_TAG: "b", EXPIRES_TAG: FUTURE})
    arm.add_group("hand-made", {EXPIRES_TAG: PAST})  # no run id: not ours
    arm.add_group("untagged")
    arm.add_group("borrowed")
    arm.add_cluster("borrowed", "gpuconf-c", {"tags": {RUN_ID_TAG: "c", EXPIRES_TAG: PAST}})
    arm.add_cluster("borrowed", "theirs", {"tags": {"team": "x"}})
    arm.add_cluster("gpuconf-expired", "gpuconf-a", {"tags": {RUN_ID_TAG: "a", EXPIRES_TAG: PAST}})
    return arm


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-conformance")
    aks.add_cli(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def run(arm: FakeArm, *argv: str) -> tuple[int, str, str]:
    args = cli("aks", "janitor", "--aks-subscription", SUBSCRIPTION, *argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, credential_factory=FakeCredential, client_kwargs=arm.transport_kwargs(),
                     now=NOW, retry_wait=0, out=out, err=err)
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


def test_janitor_deletes_only_expired_tagged_groups_and_clusters(arm: FakeArm) -> None:
    code, out, _ = run(arm)

    assert code == 0
    deleted = sorted(r.path.lower().rsplit("/", 1)[-1] for r in arm.calls("DELETE"))
    assert deleted == ["gpuconf-c", "gpuconf-expired"]
    assert sorted(arm.groups) == ["borrowed", "gpuconf-live", "hand-made", "untagged"]
    assert "janitor: deleting resource group gpuconf-expired" in out
    assert "janitor: keeping resource group gpuconf-live until 2026-11-28T13:00:00Z" in out
    assert "janitor: deleting 2, not yet expired 1, failed 0" in out
    group_list = arm.calls("GET", "/resourcegroups")[0]
    assert group_list.query["$filter"] == [f"tagName eq '{EXPIRES_TAG}'"]


def test_janitor_wait_polls_delete_202_location_to_204(arm: FakeArm) -> None:
    code, _, _ = run(arm, "--wait", "60")
    assert code == 0
    polls = [r.status for r in arm.requests if "/operationresults/" in r.path]
    assert polls == [202, 204, 202, 204]


def test_janitor_dry_run_deletes_nothing(arm: FakeArm) -> None:
    code, out, _ = run(arm, "--dry-run")
    assert code == 0 and not arm.calls("DELETE")
    assert "janitor: would delete resource group gpuconf-expired" in out


def test_janitor_reports_failed_deletions_with_exit_1(arm: FakeArm) -> None:
    arm.fail("DELETE", r"/gpuconf-expired$", 403,
             {"error": {"code": "AuthorizationFailed", "message": "no"}})
    code, out, _ = run(arm)
    assert code == 1 and "AuthorizationFailed" in out


def test_janitor_without_subscription_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  arm: FakeArm) -> None:
    for name in ("AZURE_SUBSCRIPTION_ID", "GPU_CONFORMANCE_AKS_SUBSCRIPTION"):
        monkeypatch.delenv(name, raising=False)
    args = cli("aks", "janitor")
    err = io.StringIO()
    assert args.func(args, credential_factory=FakeCredential, err=err) == 2
    assert err.getvalue() == ("gpu-conformance: error: no Azure subscription given (pass "
                              "--aks-subscription or set AZURE_SUBSCRIPTION_ID)\n")
    assert arm.requests == []


def test_plan_subcommand_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli("aks", "plan", "--aks-vm-size", "Standard_ND96isr_H100_v5", "--run-id", "p1")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"vmSize": "Standard_ND96isr_H100_v5"' in out
    assert '"expected_gpu": "NVIDIA H100 80GB HBM3"' in out
