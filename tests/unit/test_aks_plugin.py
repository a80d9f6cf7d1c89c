"""The AKS backend through the real pytest plugin, in real pytest runs (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent

PLUGIN = ("-p", "gpu_conformance.pytest_plugin", "--backend", "aks")

LIFECYCLE_CONFTEST = f"""
import json, sys
import pytest
sys.path.insert(0, {str(HERE.parents[1])!r})
from tests.unit.aks_fake_arm import FakeArm, backend_for

ARM = FakeArm()

@pytest.fixture(scope="session")
def cluster():
    backend, logs = backend_for(ARM)
    try:
        yield backend.up(logs.append)
    finally:
        backend.down(logs.append)
        with open("arm.json", "w") as fh:
            json.dump({{"deletes": [r.path for r in ARM.calls("DELETE")],
                        "groups": list(ARM.groups), "log": logs}}, fh)
"""


def plan_of(stdout: list[str]) -> dict[str, object]:
    text = "\n".join(stdout)
    data: dict[str, object] = json.loads(text[text.index("{"): text.rindex("}") + 1])
    return data


def test_dry_run_prints_plan_and_exits_0(pytester: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPU_CONFORMANCE_AKS_SUBSCRIPTION", "sub-env")
    pytester.makeini("[pytest]\naks_location = westus3\n")
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")

    result = pytester.runpytest_subprocess(*PLUGIN, "--aks-dry-run", "--run-id", "d1",
                                           "--aks-vm-size", "Standard_NC24ads_A100_v4")

    assert result.ret == 0
    data = plan_of(result.outlines)
    assert data["subscription"] == "sub-env" and data["location"] == "westus3"
    assert data["expected_gpu"] == "NVIDIA A100 80GB PCIe"
    result.stdout.fnmatch_lines(['*"action": "create GPU user pool"*',
                                 '*"vmSize": "Standard_NC24ads_A100_v4"*',
                                 '*"nodeTaints":*', '*"sku=gpu:NoSchedule"*',
                                 '*"gpu-conformance-run-id": "d1"*'])
    assert "test_never_runs" not in result.stdout.str()


def test_dry_run_from_environment_and_bad_option_is_usage_error(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_CONFORMANCE_AKS_DRY_RUN", "true")
    assert pytester.runpytest_subprocess(*PLUGIN).ret == 0
    bad = pytester.runpytest_subprocess(*PLUGIN, "--aks-node-count", "0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: bad --aks-node-count 0: expected 1 to 100"])
    assert "Traceback" not in bad.stderr.str()


def test_help_lists_options_without_touching_azure(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*PLUGIN, "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--aks-vm-size*", "*GPU_CONFORMANCE_AKS_VM_SIZE*",
                                 "*aks_vm_size*"])


@pytest.mark.parametrize("ending", ["failure", "ctrl-c"])
def test_teardown_runs_when_the_suites_fail_or_are_interrupted(pytester: pytest.Pytester,
                                                               ending: str) -> None:
    pytester.makeconftest(LIFECYCLE_CONFTEST)
    raise_line = "raise KeyboardInterrupt" if ending == "ctrl-c" else "assert False, 'GPU?'"
    pytester.makepyfile(f"""
        def test_first(cluster):
            assert cluster.kubeconfig.exists()

        def test_second(cluster):
            {raise_line}

        def test_third(cluster):
            pass
    """)

    result = pytester.runpytest_subprocess()

    assert result.ret == (2 if ending == "ctrl-c" else 1)
    record = json.loads((pytester.path / "arm.json").read_text())
    assert [p.lower().rsplit("/", 2)[-2:] for p in record["deletes"]] == [
        ["managedclusters", "gpuconf-t1"], ["resourcegroups", "gpuconf-t1"]]
    assert record["groups"] == []
    assert any("removed kubeconfig" in line for line in record["log"])
