"""kind options next to pytest-kind's and the project's, read without touching a cluster."""

from __future__ import annotations

import pytest

SHOW = """
import pytest
from gpu_conformance import pytest_plugin

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    context = config.stash.get(pytest_plugin.CONTEXT_KEY, None)
    if context is None:
        return
    backend = context.backend
    s = backend.settings
    print()
    print("NAME", backend.name, s.cluster_name, s.keep, s.node_image, s.kind_bin)
    print("GPUS", s.gpu_nodes, s.gpus_per_node, s.sku.vm_size, s.taint)
    print("IMAGES", s.images.plugin, s.images.workload, s.load_images, s.keeper_lifetime_s)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(SHOW)
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")
    return pytester


def test_help_lists_kind_options_beside_pytest_kind(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--help")
    assert result.ret == 0
    for option in ("--kind-gpu-plugin-image=", "--kind-gpu-workload-image=",
                   "--kind-gpu-keeper-seconds=", "--kind-load-image=",
                   "--kind-image=KIND_IMAGE", "--kind-bin=KIND_BIN"):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_defaults(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-s", "--co", "--backend", "kind")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "NAME kind gpu-conformance False None None",
        "GPUS 2 1 Standard_NC4as_T4_v3 False",
        "IMAGES registry.k8s.io/pause:3.10 busybox:1.36 () 7200.0",
    ])


def test_shared_pytest_kind_and_kind_options(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        "-s", "--co", "--backend", "kind", "--cluster-name", "ci", "--keep-cluster",
        "--kind-image", "kindest/node:v1.31.0", "--kind-bin", "/usr/local/bin/kind",
        "--gpu-nodes", "3", "--gpus-per-node", "2", "--gpu-product", "NVIDIA H100 NVL",
        "--taint-gpu-nodes", "--kind-gpu-plugin-image", "local/idle:1",
        "--kind-gpu-workload-image", "local/echo:1", "--kind-load-image", "local/idle:1",
        "--kind-load-image", "local/echo:1", "--kind-gpu-keeper-seconds", "0")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "NAME kind ci True kindest/node:v1.31.0 /usr/local/bin/kind",
        "GPUS 3 2 Standard_NC40ads_H100_v5 True",
        "IMAGES local/idle:1 local/echo:1 ('local/idle:1', 'local/echo:1') 0.0",
    ])


@pytest.mark.parametrize(("args", "message"), [
    (["--gpu-nodes", "0"], "*the kind backend needs at least 1 GPU worker*"),
    (["--gpu-product", "Voodoo 5"], "*--gpu-product: unknown GPU product 'Voodoo 5'; known:*"),
    (["--kind-gpu-keeper-seconds", "-1"], "*--kind-gpu-keeper-seconds must be >= 0*"),
])
def test_bad_values_are_usage_errors(project: pytest.Pytester, args: list[str],
                                     message: str) -> None:
    result = project.runpytest_subprocess("--backend", "kind", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message.lstrip('*')}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
